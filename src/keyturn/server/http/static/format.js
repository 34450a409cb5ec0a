// What the account page shows of times and devices: pure functions of their input, so each can
// be tried alone (tests/server/http/test_browser_account.py runs them in the browser).

// ---- time ---------------------------------------------------------------------------------

export function until(ms) {
  const s = Math.round(ms / 1000);
  if (s <= 0) return "now";
  if (s < 60) return `in ${s} s`;
  if (s < 3600) return `in ${Math.floor(s / 60)} min`;
  if (s < 86400) return `in ${Math.floor(s / 3600)} h`;
  return `in ${Math.floor(s / 86400)} d`;
}

export function ago(date, exact = null) {
  const s = Math.floor((Date.now() - date.getTime()) / 1000);
  if (Number.isNaN(s)) return "unknown";
  let text;
  if (s < 10) text = "just now";
  else if (s < 60) text = `${s} s ago`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min ago`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ago`;
  else {
    const days = Math.floor(s / 86400);
    if (days >= 30) return `on ${date.toLocaleDateString()}`;
    text = days === 1 ? "yesterday" : `${days} days ago`;
  }
  return exact ? `${text} (${exact})` : text;
}

// ---- devices ------------------------------------------------------------------------------

// Each device with its `agent` ({label, kind}) and the `label` it is shown by: its name, or what
// its browser says it is; devices that would look alike are numbered in the order they were first
// seen ("Chrome on Linux #1", "#2"). The server's order is kept.
export function named(sessions) {
  const shown = sessions.map((device) => {
    const agent = describeAgent(device.user_agent || "");
    return { ...device, agent, label: device.device_name || agent.label };
  });
  const alike = new Map();
  for (const device of shown) alike.set(device.label, [...(alike.get(device.label) ?? []), device]);
  for (const group of alike.values()) {
    if (group.length < 2) continue;
    [...group].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at))
      .forEach((device, index) => { device.label = `${device.label} #${index + 1}`; });
  }
  return shown;
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
export function describeAgent(ua) {
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
