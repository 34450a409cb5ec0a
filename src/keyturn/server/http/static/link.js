// link.js: the links keyturn mails point here with a token in the fragment:
//   <issuer>/#reset-password=kt_et_…   and   <issuer>/#verify-email=kt_et_…
// A fragment is never sent to a server, but it stays in the address bar, the history and
// whatever reads `location`. This classic script runs first, blocking the parser before any
// stylesheet, image or module, and moves the token out of the URL at once (history.replaceState);
// app.js then takes it with `keyturnLink.take()`, once. The page also sends no Referer at all
// (Referrer-Policy: no-referrer, and the meta tag).
"use strict";

(() => {
  const LINK = /^#(reset-password|verify-email)=([A-Za-z0-9_.~%-]{1,512})$/;
  let pending = null;

  // Moves a link token out of the address bar; returns whether there was one.
  function capture() {
    const match = LINK.exec(location.hash);
    if (!match) return false;
    history.replaceState(history.state, "", location.pathname + location.search);
    let token = match[2];
    try { token = decodeURIComponent(token); } catch { /* keep it as it came */ }
    pending = { kind: match[1], token };
    return true;
  }

  capture();
  Object.defineProperty(window, "keyturnLink", {
    value: Object.freeze({
      capture,
      /** The link this page was opened with (or navigated to since), once: {kind, token} or null. */
      take() {
        const link = pending;
        pending = null;
        return link;
      },
    }),
  });
})();
