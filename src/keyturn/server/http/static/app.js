// The keyturn account page: sign in / create an account, then "who am I", devices, password.
// Everything shown that came from the server (usernames, user agents) goes in via textContent.

import { KeyturnError, KeyturnSession } from "./keyturn-session.js";

const $ = (id) => document.getElementById(id);
const TICK_MS = 1000;

const session = new KeyturnSession({ onChange: onSessionChange });
window.keyturn = session; // for tests and for poking around in the console

let epoch = 0; // bumped on every view change, so late answers for an old view are dropped
let started = false;

// ---- views -------------------------------------------------------------------------------

function onSessionChange(state) {
  if (state.signedIn) enterApp();
  else enterAuth(state.reason);
}

function enterApp() {
  epoch += 1;
  $("auth-view").hidden = true;
  $("app-view").hidden = false;
  $("account").hidden = false;
  document.body.classList.add("signed-in");
  if (started) $("app-title").focus({ preventScroll: true });
  loadMe();
  loadDevices();
}

function enterAuth(reason) {
  epoch += 1;
  $("app-view").hidden = true;
  $("account").hidden = true;
  $("auth-view").hidden = false;
  document.body.classList.remove("signed-in");
  clearAppData();
  if (reason === "remote") notify("You were signed out in another tab.");
  else if (reason === "expired") notify("Your session has ended. Please sign in again.");
  selectTab("signin");
  $("signin-username").focus();
}

function clearAppData() {
  for (const id of ["whoami-username", "whoami-sub", "whoami-session", "whoami-expires", "account-username"]) {
    $(id).textContent = "";
  }
  $("devices").replaceChildren();
  $("password-form").reset();
  $("password-username").value = "";
}

// ---- messages ----------------------------------------------------------------------------

function notify(text) {
  $("notice").textContent = text;
}

function showError(error) {
  if (error instanceof KeyturnError && error.code === "invalid_token" && !session.signedIn) return; // signed out: the view says so
  if (error instanceof Error && !(error instanceof KeyturnError)) console.error(error);
  const box = $("error");
  box.textContent = error instanceof KeyturnError ? error.description
    : typeof error === "string" ? error : "Something went wrong. Please try again.";
  box.hidden = false;
}

function clearMessages() {
  $("error").textContent = "";
  $("error").hidden = true;
  notify("");
}

// Runs one user action: clears old messages, marks the control busy, reports any error.
async function act(control, task) {
  if (control.getAttribute("aria-busy") === "true") return;
  clearMessages();
  const buttons = control.tagName === "FORM" ? control.querySelectorAll("button") : [control];
  const hadFocus = [...buttons].includes(document.activeElement) ? document.activeElement : null;
  control.setAttribute("aria-busy", "true");
  for (const button of buttons) button.disabled = true;
  try {
    await task();
  } catch (error) {
    showError(error);
  } finally {
    control.removeAttribute("aria-busy");
    for (const button of buttons) button.disabled = false;
    if (hadFocus && document.activeElement === document.body && !hadFocus.closest("[hidden]")) hadFocus.focus();
  }
}

// ---- signed out: tabs and forms -----------------------------------------------------------

const TABS = { signin: ["show-signin", "signin-form"], signup: ["show-signup", "signup-form"] };

function selectTab(name, focusTab = false) {
  for (const [key, [tabId, formId]] of Object.entries(TABS)) {
    const selected = key === name;
    $(tabId).setAttribute("aria-selected", String(selected));
    $(tabId).tabIndex = selected ? 0 : -1;
    $(formId).hidden = !selected;
  }
  if (focusTab) $(TABS[name][0]).focus();
}

$("show-signin").addEventListener("click", () => { selectTab("signin"); clearMessages(); });
$("show-signup").addEventListener("click", () => { selectTab("signup"); clearMessages(); });
document.querySelector("[role=tablist]").addEventListener("keydown", (event) => {
  const keys = { ArrowLeft: "signin", Home: "signin", ArrowRight: "signup", End: "signup" };
  if (!(event.key in keys)) return;
  event.preventDefault();
  selectTab(keys[event.key], true);
});

// Returns the values, or marks the first empty field and returns null.
function filled(fields) {
  const missing = fields.find((input) => input.value === "" || input.value.trim() === "");
  for (const input of fields) input.removeAttribute("aria-invalid");
  if (!missing) return fields.map((input) => input.value);
  missing.setAttribute("aria-invalid", "true");
  missing.focus();
  const label = document.querySelector(`label[for="${missing.id}"]`).textContent.toLowerCase();
  showError(`Please enter your ${label}.`);
  return null;
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  act(form, async () => {
    const values = filled([$("signin-username"), $("signin-password")]);
    if (!values) return;
    const [username, password] = values;
    try {
      await session.login(username.trim(), password);
    } catch (error) {
      $("signin-password").value = "";
      $("signin-password").focus();
      throw error;
    }
    form.reset();
  });
});

$("signup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  act(form, async () => {
    const values = filled([$("signup-username"), $("signup-password")]);
    if (!values) return;
    const [username, password] = [values[0].trim(), values[1]];
    try {
      await session.register(username, password);
    } catch (error) {
      $(error.code === "username_taken" ? "signup-username" : "signup-password").focus();
      throw error;
    }
    form.reset();
    try {
      await session.login(username, password);
      notify(`Account created. Welcome, ${username}!`);
    } catch (error) {
      selectTab("signin");
      $("signin-username").value = username;
      $("signin-password").focus();
      notify("Account created. Please sign in.");
      throw error;
    }
  });
});

// ---- signed in ----------------------------------------------------------------------------

// session.fetch, then the JSON body; a refused request becomes a KeyturnError.
async function api(path, init) {
  const response = await session.fetch(path, init);
  if (response.ok) return response.status === 204 ? null : response.json();
  let body = {};
  try { body = await response.json(); } catch { /* keep the status */ }
  throw new KeyturnError(response.status, body.error || `http_${response.status}`,
    body.error_description || `The server answered ${response.status}.`);
}

async function loadMe() {
  const mine = epoch;
  try {
    const me = await api("/v1/auth/me");
    if (mine !== epoch) return;
    $("whoami-username").textContent = me.username;
    $("whoami-sub").textContent = me.sub;
    $("whoami-session").textContent = me.session_id;
    $("account-username").textContent = me.username;
    $("password-username").value = me.username;
    tick();
  } catch (error) {
    if (mine === epoch) showError(error);
  }
}

async function loadDevices() {
  const mine = epoch;
  const list = $("devices");
  list.setAttribute("aria-busy", "true");
  try {
    const { sessions } = await api("/v1/auth/sessions");
    if (mine !== epoch) return;
    sessions.sort((a, b) => Number(b.current) - Number(a.current));
    list.replaceChildren(...(sessions.length ? sessions.map(deviceItem) : [emptyItem()]));
  } catch (error) {
    if (mine === epoch) showError(error);
  } finally {
    list.removeAttribute("aria-busy");
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function emptyItem() {
  return el("li", "devices-empty muted", "No signed-in devices.");
}

function deviceItem(device) {
  const agent = describeAgent(device.user_agent || "");
  const name = device.device_name || agent.label;
  const item = el("li", "device");
  item.dataset.sessionId = device.id;
  if (device.current) item.classList.add("is-current");

  const icon = el("img", "device-icon");
  icon.src = `/static/device-${agent.kind}.svg`;
  icon.alt = "";
  icon.width = icon.height = 36;

  const body = el("div", "device-body");
  const title = el("p", "device-name", name);
  if (device.user_agent) title.title = device.user_agent;
  const meta = el("p", "device-meta");
  const parts = [];
  if (device.device_name) parts.push(document.createTextNode(agent.label));
  if (device.ip) parts.push(el("span", "device-ip", device.ip));
  parts.push(timeSpan("Signed in ", device.created_at));
  parts.push(timeSpan("Last active ", device.last_used_at));
  parts.forEach((part, index) => {
    if (index) meta.append(el("span", "sep", " · "));
    meta.append(part);
  });
  body.append(title, meta);

  const action = el("div", "device-action");
  if (device.current) {
    action.append(el("span", "device-current", "This device"));
  } else {
    const button = el("button", "button button-quiet button-small device-signout", "Sign out");
    button.type = "button";
    button.setAttribute("aria-label", `Sign out ${name}`);
    button.addEventListener("click", () => signOutDevice(button, device.id, name));
    action.append(button);
  }
  item.append(icon, body, action);
  return item;
}

function timeSpan(prefix, iso) {
  const span = el("span", "", prefix);
  const time = el("time");
  time.dateTime = iso;
  time.dataset.relative = "past";
  const date = new Date(iso);
  if (!Number.isNaN(date.getTime())) time.title = date.toLocaleString();
  time.textContent = ago(date);
  span.append(time);
  return span;
}

function signOutDevice(button, id, name) {
  act(button, async () => {
    try {
      await api(`/v1/auth/sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
      notify(`Signed out ${name}.`);
    } finally {
      await loadDevices();
      $("devices-reload").focus();
    }
  });
}

$("whoami-reload").addEventListener("click", (event) => act(event.currentTarget, loadMe));
$("devices-reload").addEventListener("click", (event) => act(event.currentTarget, loadDevices));

$("signout").addEventListener("click", (event) => act(event.currentTarget, async () => {
  await session.logout();
  notify("You have been signed out.");
}));

$("signout-all").addEventListener("click", (event) => act(event.currentTarget, async () => {
  await session.logoutAll();
  notify("You have been signed out on every device.");
}));

$("password-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  act(form, async () => {
    const values = filled([$("current-password"), $("new-password")]);
    if (!values) return;
    try {
      await session.changePassword(values[0], values[1]);
    } catch (error) {
      $(error.code === "invalid_credentials" ? "current-password" : "new-password").focus();
      throw error;
    }
    form.reset();
    notify("Password changed; other devices were signed out");
    await loadDevices();
  });
});

// ---- time ---------------------------------------------------------------------------------

function until(ms) {
  const s = Math.round(ms / 1000);
  if (s <= 0) return "now (renewing)";
  if (s < 60) return `in ${s} s`;
  if (s < 3600) return `in ${Math.floor(s / 60)} min`;
  if (s < 86400) return `in ${Math.floor(s / 3600)} h`;
  return `in ${Math.floor(s / 86400)} d`;
}

function ago(date) {
  const s = Math.floor((Date.now() - date.getTime()) / 1000);
  if (Number.isNaN(s)) return "unknown";
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  const days = Math.floor(s / 86400);
  if (days < 30) return days === 1 ? "yesterday" : `${days} days ago`;
  return `on ${date.toLocaleDateString()}`;
}

function tick() {
  const expires = $("whoami-expires");
  const at = session.expiresAt;
  if (at && !$("app-view").hidden) {
    expires.textContent = until(at - Date.now());
    expires.title = new Date(at).toLocaleString();
  }
  for (const time of document.querySelectorAll("time[data-relative]")) {
    time.textContent = ago(new Date(time.dateTime));
  }
}

// ---- user agents --------------------------------------------------------------------------

const BROWSERS = [
  [/Edg(?:e|A|iOS)?\//, "Edge"], [/OPR\/|Opera/, "Opera"], [/SamsungBrowser\//, "Samsung Internet"],
  [/Firefox\/|FxiOS\//, "Firefox"], [/HeadlessChrome\//, "Headless Chrome"], [/Chromium\//, "Chromium"],
  [/Chrome\/|CriOS\//, "Chrome"], [/Version\/[\d.]+.*Safari\//, "Safari"],
];
const SYSTEMS = [
  [/iPad/, "iPadOS"], [/iPhone|iPod/, "iOS"], [/Android/, "Android"], [/CrOS/, "ChromeOS"],
  [/Windows/, "Windows"], [/Macintosh|Mac OS X/, "macOS"], [/Linux|X11/, "Linux"],
];

// "Mozilla/5.0 (X11; Linux x86_64) ... Chrome/126..." → { label: "Chrome on Linux", kind: "desktop" }
function describeAgent(ua) {
  const browser = BROWSERS.find(([pattern]) => pattern.test(ua))?.[1];
  const system = SYSTEMS.find(([pattern]) => pattern.test(ua))?.[1];
  if (browser) {
    const kind = /Mobi|iPhone|iPod|Android/.test(ua) ? "phone" : "desktop";
    return { label: system ? `${browser} on ${system}` : browser, kind };
  }
  const program = ua.match(/^([\w.-]{1,40})\/([\w.-]{1,20})/); // curl/8.5.0, python-httpx/0.27.0
  if (program) return { label: `${program[1]} ${program[2]}`, kind: "terminal" };
  if (!ua.trim()) return { label: "Unknown device", kind: "terminal" };
  return { label: ua.length > 40 ? `${ua.slice(0, 39)}…` : ua, kind: system ? "desktop" : "terminal" };
}

// ---- start --------------------------------------------------------------------------------

async function start() {
  try {
    if (!(await session.restore()) && !session.signedIn) enterAuth(null);
  } catch (error) {
    enterAuth(null);
    showError(error);
  } finally {
    $("loading").hidden = true;
    started = true;
  }
}

setInterval(tick, TICK_MS);
start();
