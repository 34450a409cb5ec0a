// keyturn-session.js: a small browser client for a keyturn server in cookie mode.
//
// The refresh token lives in an HttpOnly cookie that this code never sees. The access token is
// kept only in memory (never localStorage, sessionStorage or a readable cookie), so a page
// reload starts with `restore()`, which trades the cookie for a fresh access token.
//
// Tabs of one browser share the cookie, so they coordinate: a refresh runs under the Web Lock
// "keyturn-refresh", its result is broadcast on the BroadcastChannel "keyturn", and a tab that
// gets the lock just after another tab refreshed adopts that token instead of rotating again.
// A sign-out (logout, logout-all, or a refresh that finds the session over) is broadcast as well,
// carrying no token: every other tab drops its token at once, without a request, and reports
// `reason: "remote"`. A tab never adopts a token of a session it has seen end, so a refresh
// that was already on its way cannot sign a tab back in.
//
//   import { KeyturnSession } from "/static/keyturn-session.js";
//   const session = new KeyturnSession({ onChange: ({ signedIn }) => render(signedIn) });
//   if (!(await session.restore())) showSignIn();
//   const me = await (await session.fetch("/v1/auth/me")).json();

const LOCK_NAME = "keyturn-refresh";
const CHANNEL_NAME = "keyturn";
const CSRF_COOKIE = "__Host-keyturn-csrf";
const MAX_MARGIN_MS = 30_000;
const RETRY_MS = 5_000;
const SETTLE_MS = 100;

/** A refused request: `status` (0 for a network failure), `code` and a human `description`. */
export class KeyturnError extends Error {
  constructor(status, code, description) {
    super(description || code);
    this.name = "KeyturnError";
    this.status = status;
    this.code = code;
    this.description = description || code;
  }
}

export class KeyturnSession {
  #base;
  #onChange;
  #token = null;
  #expiresAt = 0; // ms since the epoch
  #lifetime = 0; // ms, of the last token the server issued
  #sessionId = null;
  #timer = null;
  #refreshing = null;
  #channel = null;
  #ended = new Set(); // ids of the sessions this tab has seen end

  /** @param {{base?: string, onChange?: (state: {signedIn: boolean, sessionId: string|null, reason: string}) => void}} options */
  constructor({ base = "", onChange } = {}) {
    this.#base = base;
    this.#onChange = onChange || (() => {});
    if (typeof BroadcastChannel === "function") {
      this.#channel = new BroadcastChannel(CHANNEL_NAME);
      this.#channel.onmessage = (event) => this.#onMessage(event.data);
    }
    document.addEventListener("visibilitychange", () => {
      // Background tabs have their timers throttled: catch up as soon as the tab is seen again.
      if (document.visibilityState === "visible" && this.#token && !this.#fresh()) {
        this.refresh().catch(() => this.#schedule(RETRY_MS));
      }
    });
  }

  get signedIn() { return this.#token !== null; }
  get accessToken() { return this.#token; }
  get expiresAt() { return this.#token ? this.#expiresAt : null; }
  get sessionId() { return this.#sessionId; }

  /** Sign in with a password; the server sets the session cookie. Throws KeyturnError. */
  async login(username, password, deviceName) {
    const body = { username, password, mode: "cookie" };
    if (deviceName) body.device_name = deviceName;
    const tokens = await this.#json(await this.#post("/v1/auth/login", body));
    this.#accept(tokens, "login");
    this.#broadcastToken(); // the cookie is shared: the other tabs are signed in too
    return tokens;
  }

  /**
   * Create an account (does not sign in); with an `email`, the server mails it a verification
   * link. Throws KeyturnError, e.g. code "username_taken".
   */
  async register(username, password, email) {
    const body = { username, password };
    if (email) body.email = email;
    return this.#json(await this.#post("/v1/auth/register", body));
  }

  // Account recovery: no session needed. The answers to `forgotPassword` and `resendVerification`
  // are the same whether or not the address has an account; they resolve the server's status text.

  /** Ask for a link to choose a new password, mailed to `email`. Throws KeyturnError (e.g. "rate_limited"). */
  async forgotPassword(email) {
    return (await this.#json(await this.#post("/v1/auth/password/forgot", { email }))).status;
  }

  /** Ask for a new verification link for `email`. Throws KeyturnError. */
  async resendVerification(email) {
    return (await this.#json(await this.#post("/v1/auth/email/resend", { email }))).status;
  }

  /** Verify an address with the token of the mailed link; resolves {email, email_verified}. Throws KeyturnError. */
  async verifyEmail(token) {
    return this.#json(await this.#post("/v1/auth/email/verify", { token }));
  }

  /**
   * Choose a new password with the token of the mailed link. Every session of that user ends,
   * on every device; resolves how many. Throws KeyturnError ("invalid_grant": the link is used or
   * expired; "invalid_request": the password breaks the policy).
   */
  async resetPassword(token, newPassword) {
    const body = { token, new_password: newPassword };
    return (await this.#json(await this.#post("/v1/auth/password/reset", body))).sessions_ended;
  }

  /** On page load: is the cookie session alive? One refresh; true if signed in now. */
  async restore() {
    // Same origin and no CSRF cookie: there is no session cookie either (they are set together).
    if (!this.#base && !readCookie(CSRF_COOKIE)) return false;
    return this.refresh();
  }

  /**
   * Get a new access token with the session cookie. Resolves true, or false when the session is
   * over (then the state is signed out). Throws KeyturnError for outages (429, 503, network).
   */
  refresh() {
    // One refresh at a time per tab; concurrent callers share its result.
    this.#refreshing ??= this.#lockedRefresh().finally(() => { this.#refreshing = null; });
    return this.#refreshing;
  }

  /** `fetch` with the bearer token (and CSRF header on writes); refreshes once on an expired token. */
  async fetch(path, init = {}) {
    if (this.#token && this.#expiresAt <= Date.now()) await this.refresh();
    const used = this.#token;
    let response = await this.#send(path, init, used);
    if (response.status === 401 && /invalid_token/.test(response.headers.get("WWW-Authenticate") || "")) {
      // Signed out (here or in another tab) while the request was on its way: nothing to retry.
      if (used !== null && this.#token === null) return response;
      // Another tab may already have replaced the token; otherwise ask the server once.
      if ((this.#token && this.#token !== used) || (await this.refresh())) {
        response = await this.#send(path, init, this.#token);
      }
    }
    return response;
  }

  /** Change the password; this session continues, every other session ends. Throws KeyturnError. */
  async changePassword(currentPassword, newPassword) {
    const body = JSON.stringify({ current_password: currentPassword, new_password: newPassword });
    const tokens = await this.#json(await this.fetch("/v1/auth/password", { method: "POST", body }));
    this.#accept(tokens, "password");
    this.#broadcastToken();
    return tokens;
  }

  /** End this session (all tabs of this browser). Throws KeyturnError if the server can't be reached. */
  logout() { return this.#endSessions("/v1/auth/logout"); }

  /** End every session of this user, on every device. */
  logoutAll() { return this.#endSessions("/v1/auth/logout-all"); }

  async #endSessions(path) {
    const response = await this.fetch(path, { method: "POST", body: "{}" });
    // 401: the session had already ended, which is what the caller asked for.
    if (!response.ok && response.status !== 401) await this.#json(response);
    this.#signOut("logout", true);
  }

  #lockedRefresh() {
    const stale = this.#token;
    // Another tab refreshed while this one waited for the lock: use its token.
    const adopted = () => this.#token !== null && this.#token !== stale && this.#fresh();
    if (!navigator.locks) {
      // No Web Locks: a random pause lets one tab usually go first and the others adopt its
      // broadcast; when two still collide, the server's grace window gives both the same refresh token.
      return sleep(Math.random() * SETTLE_MS).then(() => (adopted() ? true : this.#refreshNow()));
    }
    return new Promise((resolve, reject) => {
      navigator.locks.request(LOCK_NAME, async () => {
        if (adopted()) return resolve(true);
        try {
          resolve(await this.#refreshNow());
        } catch (error) {
          return reject(error);
        }
        // Keep the lock a moment so the broadcast reaches the other tabs before they get it.
        await sleep(SETTLE_MS);
      }).catch(reject);
    });
  }

  async #refreshNow() {
    const response = await this.#post("/v1/auth/refresh", {});
    if (response.ok) {
      const tokens = await response.json();
      // The server rotated just before the session ended (another tab signed out meanwhile).
      if (this.#ended.has(tokens.session_id)) return false;
      this.#accept(tokens, "refresh");
      this.#broadcastToken();
      return true;
    }
    const error = await this.#error(response);
    // invalid_grant: the session ended; invalid_request: there is no session cookie at all.
    if (error.code === "invalid_grant" || (response.status === 400 && error.code === "invalid_request")) {
      this.#signOut("expired", this.#token !== null);
      return false;
    }
    throw error;
  }

  #accept(tokens, reason) {
    this.#lifetime = tokens.expires_in * 1000;
    this.#adopt(tokens.access_token, Date.now() + this.#lifetime, reason, tokens.session_id);
  }

  #adopt(token, expiresAt, reason, sessionId = sessionOf(token)) {
    const before = { signedIn: this.signedIn, sessionId: this.#sessionId };
    this.#token = token;
    this.#expiresAt = expiresAt;
    this.#sessionId = sessionId;
    this.#schedule(expiresAt - this.#margin() - Date.now());
    if (!before.signedIn || before.sessionId !== sessionId) this.#changed(reason);
  }

  #signOut(reason, broadcast) {
    const wasSignedIn = this.signedIn;
    const ended = this.#sessionId;
    if (ended) this.#ended.add(ended);
    clearTimeout(this.#timer);
    this.#token = null;
    this.#expiresAt = 0;
    this.#sessionId = null;
    if (broadcast) this.#broadcast({ type: "logout", session_id: ended });
    if (wasSignedIn) this.#changed(reason);
  }

  #onMessage(message) {
    if (message?.type === "logout") {
      if (typeof message.session_id === "string") this.#ended.add(message.session_id);
      this.#signOut("remote", false);
    } else if (message?.type === "token" && message.expires_at > Date.now() + this.#margin()
      && !this.#ended.has(sessionOf(message.access_token))) {
      this.#adopt(message.access_token, message.expires_at, "remote");
    }
  }

  #margin() {
    const lifetime = this.#lifetime || Math.max(0, this.#expiresAt - Date.now());
    return Math.min(MAX_MARGIN_MS, lifetime / 3);
  }

  #fresh() {
    return this.#expiresAt - Date.now() > this.#margin();
  }

  #schedule(delay) {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      // Silent: a failed background refresh is retried; a request that needs a token will retry too.
      this.refresh().catch(() => this.#schedule(RETRY_MS));
    }, Math.max(0, delay));
  }

  #changed(reason) {
    this.#onChange({ signedIn: this.signedIn, sessionId: this.#sessionId, reason });
  }

  #broadcast(message) {
    this.#channel?.postMessage(message);
  }

  #broadcastToken() {
    this.#broadcast({ type: "token", access_token: this.#token, expires_at: this.#expiresAt });
  }

  #post(path, body) {
    return this.#send(path, { method: "POST", body: JSON.stringify(body) }, null);
  }

  async #send(path, init, token) {
    const headers = new Headers(init.headers);
    const method = (init.method || "GET").toUpperCase();
    if (token) headers.set("Authorization", `Bearer ${token}`);
    if (init.body !== undefined && !headers.has("Content-Type")) headers.set("Content-Type", "application/json");
    if (method !== "GET" && method !== "HEAD") {
      const csrf = readCookie(CSRF_COOKIE);
      if (csrf) headers.set("X-CSRF-Token", csrf);
    }
    try {
      return await fetch(this.#base + path, { credentials: "same-origin", ...init, method, headers });
    } catch {
      throw new KeyturnError(0, "network_error", "The server could not be reached. Check your connection and try again.");
    }
  }

  async #json(response) {
    if (!response.ok) throw await this.#error(response);
    return response.status === 204 ? null : response.json();
  }

  async #error(response) {
    let body = {};
    try { body = await response.json(); } catch { /* not JSON: fall back to the status */ }
    return new KeyturnError(response.status, body.error || `http_${response.status}`,
      body.error_description || `The server answered ${response.status} ${response.statusText}.`.trim());
  }
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}

// The session id of an access token received from another tab (its `sid` claim); display only,
// the server verifies the token.
function sessionOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sid ?? null;
  } catch {
    return null;
  }
}
