// The keyturn account page: sign in, create an account, recover one (a forgotten password, email
// verification, from the links keyturn mails), then "who am I", devices and password.
// Everything shown that came from the server (usernames, addresses, user agents, device names)
// goes in via textContent.

import { KeyturnError, KeyturnSession } from "./keyturn-session.js";
import { ago, named, until } from "./format.js";

const $ = (id) => document.getElementById(id);
const TICK_MS = 1000;

// What the server's settings ask of the page, as attributes of <body> the server sets: whether
// sign-up needs an address, and whether it sends mail at all (no mail: no link to ask for).
const EMAIL_REQUIRED = document.body.dataset.email === "required";
const MAIL = document.body.dataset.mail !== "off";

const session = new KeyturnSession({ onChange: onSessionChange });
window.keyturn = session; // for tests and for poking around in the console

let epoch = 0; // bumped on every view change, so late answers for an old view are dropped
let started = false;
let devices = []; // the device list as last shown, with display names
let resetToken = null; // the token of the password-reset link this page was opened with
let focusLater = null; // a control to focus when the action under way ends

// ---- messages ----------------------------------------------------------------------------
// The page, the sign-in card and each card of the account have an error region (role="alert")
// and a notice region (role="status"). A message goes to the region of the place the user acted
// in, which is scrolled into view; the regions stay in the page (empty when there is nothing
// to say) so that screen readers announce what is written into them.

const pageMessages = () => $("page-messages");

function placeOf(node) {
  const place = node?.closest?.("[data-place]");
  return place && !place.closest("[hidden]") ? place : pageMessages();
}

function say(where, kind, text) {
  const box = placeOf(where).querySelector(`.message-${kind}`);
  box.textContent = text;
  if (text) box.scrollIntoView({ block: "nearest" });
  return box;
}

function notify(text, where = pageMessages()) {
  say(where, "notice", text);
}

function describe(error) {
  if (error instanceof KeyturnError) return error.description;
  return typeof error === "string" ? error : "Something went wrong. Please try again.";
}

// Shows an error where the user is looking; returns the region it went to (or null).
function showError(error, where = pageMessages()) {
  if (error instanceof KeyturnError && error.code === "invalid_token" && !session.signedIn) return null; // signed out: the view says so
  if (error instanceof Error && !(error instanceof KeyturnError)) console.error(error);
  return say(where, "error", describe(error));
}

// An error about one field: said next to its form, the field focused (and marked invalid, and
// described by the error, unless `invalid` is false: a refused sign-in names no one field).
// A button of a busy form is focused once `act` enables it again.
function fail(input, error, invalid = true) {
  if (input.disabled) focusLater = input;
  else input.focus();
  const box = showError(error, input);
  if (box && invalid) {
    input.setAttribute("aria-invalid", "true");
    input.dataset.describedby ??= input.getAttribute("aria-describedby") ?? "";
    input.setAttribute("aria-describedby", `${input.dataset.describedby} ${box.id}`.trim());
  }
  box?.scrollIntoView({ block: "nearest" });
}

function markValid(input) {
  input.removeAttribute("aria-invalid");
  if (input.dataset.describedby === undefined) return;
  if (input.dataset.describedby) input.setAttribute("aria-describedby", input.dataset.describedby);
  else input.removeAttribute("aria-describedby");
  delete input.dataset.describedby;
}

function clearMessages() {
  for (const box of document.querySelectorAll(".message")) box.textContent = "";
  for (const input of document.querySelectorAll("[aria-invalid]")) markValid(input);
}

// Runs `task(form)` as one user action (`act`) whenever `form` is submitted.
function onSubmit(form, task) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(form, () => task(form));
  });
}

// Runs one user action: clears old messages, marks the control busy, reports any error next to it.
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
    showError(error, control);
  } finally {
    control.removeAttribute("aria-busy");
    for (const button of buttons) button.disabled = false;
    focusLater?.focus();
    focusLater = null;
    if (hadFocus && document.activeElement === document.body && !hadFocus.closest("[hidden]")) hadFocus.focus();
  }
}

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

// The signed-out view; a new password being chosen from a link stays on screen.
function enterAuth(reason, show = panel === "reset" ? "reset" : "signin") {
  epoch += 1;
  $("app-view").hidden = true;
  $("account").hidden = true;
  $("auth-view").hidden = false;
  document.body.classList.remove("signed-in");
  if ($("signout-all-dialog").open) $("signout-all-dialog").close();
  clearAppData();
  if (reason === "remote") notify("You were signed out in another tab.");
  else if (reason === "expired") notify("Your session has ended. Please sign in again.");
  showPanel(show, true);
}

function clearAppData() {
  for (const id of ["whoami-username", "whoami-email", "whoami-email-status", "whoami-since", "whoami-device",
    "whoami-expires", "account-username"]) {
    $(id).textContent = "";
  }
  $("whoami-email-row").hidden = true;
  $("devices").replaceChildren();
  devices = [];
  $("password-form").reset();
  $("password-username").value = "";
}

// ---- signed out: the panels of the sign-in card -------------------------------------------

const WELCOME = ["Welcome to keyturn", "Sign in to manage your account and the devices signed in to it."];
const PANELS = {
  signin: WELCOME,
  signup: WELCOME,
  forgot: ["Forgot your password?", "We send a link to choose a new one to the address of your account."],
  resend: ["Verify your email address", "We send a new link to the address you signed up with."],
  reset: ["Choose a new password", "For the account this link was sent about."],
};
const TABS = { signin: "show-signin", signup: "show-signup" };
let panel = "signin";

// Shows one panel (form) of the sign-in card; `focus`: its first field.
function showPanel(name, focus = false) {
  panel = name;
  for (const key of Object.keys(PANELS)) $(`${key}-form`).hidden = key !== name;
  $("auth-tabs").hidden = !(name in TABS);
  for (const [key, tabId] of Object.entries(TABS)) {
    $(tabId).setAttribute("aria-selected", String(key === name));
    $(tabId).tabIndex = key === name ? 0 : -1;
  }
  [$("auth-title").textContent, $("auth-lead").textContent] = PANELS[name];
  if (name !== "signin") $("resend-offer").hidden = true;
  if (name !== "reset") $("reset-again").hidden = true;
  if (focus) $(`${name}-form`).querySelector("input:not([readonly])").focus();
}

function selectTab(name, focusTab = false) {
  showPanel(name);
  if (focusTab) $(TABS[name]).focus();
}

$("show-signin").addEventListener("click", () => { selectTab("signin"); clearMessages(); });
$("show-signup").addEventListener("click", () => { selectTab("signup"); clearMessages(); });
$("auth-tabs").addEventListener("keydown", (event) => {
  const keys = { ArrowLeft: "signin", Home: "signin", ArrowRight: "signup", End: "signup" };
  if (!(event.key in keys)) return;
  event.preventDefault();
  selectTab(keys[event.key], true);
});
$("show-forgot").addEventListener("click", () => { clearMessages(); showPanel("forgot", true); });
$("show-resend").addEventListener("click", () => { clearMessages(); showPanel("resend", true); });
$("reset-ask-again").addEventListener("click", () => { clearMessages(); showPanel("forgot", true); });
for (const button of document.querySelectorAll(".back-to-signin")) {
  button.addEventListener("click", () => {
    clearMessages();
    resetToken = null;
    if (session.signedIn) enterApp();
    else showPanel("signin", true);
  });
}

// Returns the values, or marks the first empty field and returns null.
function filled(fields) {
  const missing = fields.find((input) => input.value.trim() === "");
  if (!missing) return fields.map((input) => input.value);
  const label = document.querySelector(`label[for="${missing.id}"]`).textContent.toLowerCase();
  fail(missing, `Please enter your ${label}.`);
  return null;
}

onSubmit($("signin-form"), async (form) => {
  const values = filled([$("signin-username"), $("signin-password")]);
  if (!values) return;
  const [username, password] = values;
  try {
    await session.login(username.trim(), password);
  } catch (error) {
    $("signin-password").value = "";
    $("resend-offer").hidden = error.code !== "email_not_verified";
    fail($("signin-password"), error, false);
    return;
  }
  form.reset();
});

// Which sign-up field a refusal is about.
function signupField(error) {
  if (error.code === "username_taken") return $("signup-username");
  if (/e-?mail|address/i.test(error.description || "")) return $("signup-email");
  return $("signup-password");
}

onSubmit($("signup-form"), async (form) => {
  const values = filled([$("signup-username"), ...(EMAIL_REQUIRED ? [$("signup-email")] : []), $("signup-password")]);
  if (!values) return;
  const [username, password] = [values[0].trim(), values.at(-1)];
  const email = $("signup-email").value.trim();
  if (email && !$("signup-email").checkValidity()) {
    fail($("signup-email"), "Please enter a whole email address (name@example.com), or none.");
    return;
  }
  try {
    await session.register(username, password, email || undefined);
  } catch (error) {
    fail(signupField(error), error, ["invalid_request", "username_taken"].includes(error.code));
    return;
  }
  form.reset();
  const sent = email ? `We sent a link to ${email} to verify it.` : "";
  try {
    await session.login(username, password);
    notify(`Account created. Welcome, ${username}! ${sent}`.trim());
  } catch (error) {
    showPanel("signin");
    $("signin-username").value = username;
    if (error.code === "email_not_verified") {
      notify(`Account created. ${sent} Open it, then sign in here.`, form);
      $("signin-password").focus();
      return;
    }
    notify("Account created. Please sign in.", form);
    fail($("signin-password"), error, false);
  }
});

// The forms that ask for an address answer with the server's status text, whatever the address.
for (const [formId, inputId, ask] of [
  ["forgot-form", "forgot-email", (email) => session.forgotPassword(email)],
  ["resend-form", "resend-email", (email) => session.resendVerification(email)],
]) {
  onSubmit($(formId), async (form) => {
    const values = filled([$(inputId)]);
    if (!values) return;
    try {
      notify(await ask(values[0].trim()), form);
    } catch (error) {
      fail($(inputId), error, error.code === "invalid_request");
    }
  });
}

onSubmit($("reset-form"), async (form) => {
  const values = filled([$("reset-password"), $("reset-confirm")]);
  if (!values) return;
  if (values[0] !== values[1]) {
    fail($("reset-confirm"), "The two passwords are not the same; type the new one twice.");
    return;
  }
  try {
    await session.resetPassword(resetToken, values[0]);
  } catch (error) {
    if (error.code === "invalid_grant") {
      $("reset-again").hidden = false;
      fail($("reset-ask-again"), error, false);
    } else {
      fail($("reset-password"), error, error.code === "invalid_request");
    }
    return;
  }
  resetToken = null;
  form.reset();
  // A tab signed in here learns from the server whether its session was one that ended.
  if (session.signedIn && !(await session.refresh().catch(() => true))) notify("");
  if (session.signedIn) enterApp();
  else showPanel("signin");
  const done = "Password changed; every device was signed out. Sign in with your new password.";
  notify(done, session.signedIn ? pageMessages() : $("signin-form"));
  if (!session.signedIn) $("signin-username").focus();
});

// ---- links from mails ---------------------------------------------------------------------

// A link's token, already out of the address bar (link.js): choose a new password, or verify.
async function openLink(link) {
  if (link.kind === "reset-password") {
    resetToken = link.token;
    clearMessages();
    $("app-view").hidden = true;
    $("auth-view").hidden = false;
    showPanel("reset", true);
    return true;
  }
  return verifyEmail(link.token);
}

// Verifies an address with a link's token; whether it was verified. Signed out, the sign-in card
// then shows what comes next: signing in, or asking for a new link.
async function verifyEmail(token) {
  const next = (name) => {
    if (!session.signedIn && !$("auth-view").hidden && panel !== "reset") showPanel(name, true);
  };
  try {
    const { email } = await session.verifyEmail(token);
    notify(`Your email address ${email} is verified.`);
    if (session.signedIn) {
      await session.refresh().catch(() => {}); // a new access token says so too (email_verified)
      loadMe();
    }
    next("signin");
    return true;
  } catch (error) {
    showError(error);
    next("resend");
    return false;
  }
}

window.addEventListener("hashchange", () => {
  if (window.keyturnLink?.capture()) openLink(window.keyturnLink.take());
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
    $("account-username").textContent = me.username;
    $("password-username").value = me.username;
    showEmail(me);
    const since = (me.auth_time ?? me.iat) * 1000;
    $("whoami-since").replaceChildren(timeElement(new Date(since).toISOString(), true, true));
    tick();
  } catch (error) {
    if (mine === epoch) showError(error, $("whoami-reload"));
  }
}

// Back to this tab (from a mailed link opened in another, say): the account as it is now.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && session.signedIn && !$("app-view").hidden) loadMe();
});

// The address and whether it is verified, once the server tells (older servers do not).
function showEmail(me) {
  const row = $("whoami-email-row");
  row.hidden = !("email" in me);
  if (row.hidden) return;
  $("whoami-email").textContent = me.email ?? "Not set";
  $("whoami-email").classList.toggle("muted", !me.email);
  const status = $("whoami-email-status");
  status.textContent = !me.email ? "" : me.email_verified ? "Verified" : "Not verified";
  status.className = `badge ${me.email_verified ? "badge-ok" : "badge-warn"}`;
  status.hidden = !me.email;
  $("whoami-resend").hidden = !MAIL || !me.email || me.email_verified;
  $("whoami-resend").dataset.email = me.email ?? "";
}

$("whoami-resend").addEventListener("click", (event) => {
  const button = event.currentTarget;
  act(button, async () => notify(await session.resendVerification(button.dataset.email), button));
});

async function loadDevices() {
  const mine = epoch;
  const list = $("devices");
  list.setAttribute("aria-busy", "true");
  try {
    const { sessions } = await api("/v1/auth/sessions");
    if (mine !== epoch) return;
    sessions.sort((a, b) => Number(b.current) - Number(a.current));
    devices = named(sessions);
    list.replaceChildren(...(devices.length ? devices.map(deviceItem) : [emptyItem()]));
    $("whoami-device").textContent = devices.find((d) => d.current)?.label ?? "";
  } catch (error) {
    if (mine === epoch) showError(error, list);
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

function button(text, className, onClick) {
  const node = el("button", `button button-quiet button-small ${className}`, text);
  node.type = "button";
  if (onClick) node.addEventListener("click", onClick);
  return node;
}

function emptyItem() {
  return el("li", "devices-empty muted", "No signed-in devices.");
}

function deviceItem(device) {
  const item = el("li", "device");
  item.dataset.sessionId = device.id;
  if (device.current) item.classList.add("is-current");

  const icon = el("img", "device-icon");
  icon.src = `/static/device-${device.agent.kind}.svg`;
  icon.alt = "";
  icon.width = icon.height = 36;

  const body = el("div", "device-body");
  const title = el("p", "device-name", device.label);
  if (device.user_agent) title.title = device.user_agent;
  const meta = el("p", "device-meta");
  const parts = [];
  if (device.device_name) parts.push(document.createTextNode(device.agent.label));
  if (device.ip) parts.push(el("span", "device-ip", device.ip));
  parts.push(labelled("First seen ", timeElement(device.created_at, false)));
  parts.push(labelled("Last active ", timeElement(device.last_used_at, true)));
  parts.forEach((part, index) => {
    if (index) meta.append(el("span", "sep", " · "));
    meta.append(part);
  });
  body.append(title, meta);

  const action = el("div", "device-action");
  const rename = button("Rename", "device-rename", () => startRename(item, device));
  rename.setAttribute("aria-label", `Rename ${device.label}`);
  action.append(rename);
  if (device.current) {
    action.append(el("span", "device-current", "This device"));
  } else {
    const signout = button("Sign out", "device-signout");
    signout.setAttribute("aria-label", `Sign out ${device.label}`);
    signout.addEventListener("click", () => signOutDevice(signout, device.id, device.label));
    action.append(signout);
  }
  item.append(icon, body, action);
  return item;
}

function labelled(prefix, node) {
  const span = el("span", "", prefix);
  span.append(node);
  return span;
}

// A <time>: "3 min ago" (kept current by tick) or a date and time; the other one as its tooltip.
function timeElement(iso, relative, both = false) {
  const time = el("time");
  time.dateTime = iso;
  const date = new Date(iso);
  const exact = Number.isNaN(date.getTime()) ? "unknown"
    : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  if (relative) {
    time.dataset.relative = both ? "exact" : "past";
    time.dataset.exact = exact;
    time.title = exact;
    time.textContent = ago(date, both ? exact : null);
  } else {
    time.textContent = exact;
    time.title = ago(date);
  }
  return time;
}

// Replaces a device's name with a small form to rename it (an empty name: back to its browser's).
function startRename(item, device) {
  const title = item.querySelector(".device-name");
  const form = el("form", "rename-form");
  form.noValidate = true;
  const input = el("input");
  input.id = `rename-${device.id}`;
  input.maxLength = 128;
  input.autocomplete = "off";
  input.value = device.device_name ?? "";
  input.placeholder = device.agent.label;
  const label = el("label", "visually-hidden", `New name for ${device.label}`);
  label.htmlFor = input.id;
  const cancel = button("Cancel", "rename-cancel", () => endRename());
  const save = button("Save", "button-primary rename-save");
  save.classList.remove("button-quiet");
  save.type = "submit";
  form.append(label, input, save, cancel);
  title.replaceWith(form);
  item.querySelector(".device-rename").hidden = true;
  input.focus();
  input.select();

  function endRename() {
    form.replaceWith(title);
    item.querySelector(".device-rename").hidden = false;
    item.querySelector(".device-rename").focus();
  }
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); endRename(); }
  });
  onSubmit(form, async (form) => {
    const renamed = await api(`/v1/auth/sessions/${encodeURIComponent(device.id)}`, {
      method: "PATCH", body: JSON.stringify({ device_name: input.value.trim() }),
    });
    await loadDevices();
    notify(renamed.device_name ? `Renamed to “${renamed.device_name}”.` : "Name removed.", $("devices"));
    const again = [...$("devices").children].find((li) => li.dataset.sessionId === device.id);
    (again?.querySelector(".device-rename") ?? $("devices-reload")).focus();
  });
}

function signOutDevice(control, id, name) {
  act(control, async () => {
    try {
      await api(`/v1/auth/sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
      notify(`Signed out ${name}.`, $("devices"));
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

// "Sign out everywhere" asks first, in a modal dialog (Cancel is the default; Escape cancels too).
$("signout-all").addEventListener("click", () => {
  const dialog = $("signout-all-dialog");
  dialog.returnValue = "";
  dialog.showModal();
});
$("signout-all-dialog").addEventListener("close", (event) => {
  const opener = $("signout-all");
  if (event.currentTarget.returnValue !== "confirm") {
    opener.focus();
    return;
  }
  act(opener, async () => {
    await session.logoutAll();
    notify("You have been signed out on every device.");
  });
});

// How many other devices are signed in (asked just before a password change ends them).
async function otherDevices() {
  try {
    const { sessions } = await api("/v1/auth/sessions");
    return sessions.filter((device) => !device.current).length;
  } catch {
    return devices.filter((device) => !device.current).length;
  }
}

onSubmit($("password-form"), async (form) => {
  const values = filled([$("current-password"), $("new-password")]);
  if (!values) return;
  const others = await otherDevices();
  try {
    await session.changePassword(values[0], values[1]);
  } catch (error) {
    const wrong = error.code === "invalid_credentials";
    fail($(wrong ? "current-password" : "new-password"), error, wrong || error.code === "invalid_request");
    return;
  }
  form.reset();
  notify(others ? "Password changed; other devices were signed out." : "Password changed.", form);
  await loadDevices();
});

// ---- time ---------------------------------------------------------------------------------

function tick() {
  const expires = $("whoami-expires");
  const at = session.expiresAt;
  if (at && !$("app-view").hidden) {
    expires.textContent = until(at - Date.now());
    expires.title = new Date(at).toLocaleString();
  }
  for (const time of document.querySelectorAll("time[data-relative]")) {
    const exact = time.dataset.relative === "exact" ? time.dataset.exact : null;
    time.textContent = ago(new Date(time.dateTime), exact);
  }
}

// ---- start --------------------------------------------------------------------------------

// The sign-up and sign-in card as the server's settings have it.
function followSettings() {
  $("signup-email").required = EMAIL_REQUIRED;
  const hint = $("signup-email-hint");
  if (EMAIL_REQUIRED) hint.textContent = "Required. We send a link to verify it; you can sign in once you have opened it.";
  if (!MAIL) {
    hint.textContent = "Optional. This server sends no mail: a forgotten password is reset by its operator.";
    $("show-forgot").parentElement.hidden = true;
  }
}

async function start() {
  followSettings();
  const link = window.keyturnLink?.take() ?? null;
  try {
    if (link?.kind === "reset-password") {
      await openLink(link); // choosing a new password needs no session: the link stands for the account
      return;
    }
    let show = "signin";
    if (link) {
      $("loading").textContent = "Verifying your email address…";
      if (!(await openLink(link))) show = "resend";
    }
    if (!(await session.restore()) && !session.signedIn) enterAuth(null, show);
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
