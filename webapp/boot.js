// Ringboard start-up, served as /app/boot.js (an ES module, no inline script).
//
// 1. Translate the shell's texts, so the page speaks the user's language while
//    Python starts (about 2 s).
// 2. Fetch /app/ui.zip while Pyodide starts from the path in
//    <meta name="ringboard-pyodide">.
// 3. Unpack the zip into Python's file system, import ringboard_ui.main and call
//    start(). From then on Python owns the page.
// It also registers the service worker /sw.js.
// Any failure shows #boot-error with the reason and sets html[data-ringboard=failed].
//
// Performance marks for the start-up timings: ringboard:boot, ringboard:pyodide,
// ringboard:unpacked, and ringboard:live (set by the UI once it runs).

const UI_ZIP_URL = "/app/ui.zip";
const UI_DIR = "/home/pyodide/ringboard";
const UI_MODULE = "ringboard_ui.main";
const SUPPORTED_LANGUAGES = ["en", "de", "fr", "it"];

// Pyodide does not reject when its WebAssembly cannot start (for example when a
// proxy's Content-Security-Policy lacks 'wasm-unsafe-eval'); it waits forever. Python
// starts in about 2-3 s from cache on a two-core office PC, and the first visit also
// downloads about 13.5 MB, so a page still loading after this long is shown as failed.
// If Python comes up later after all, the message is taken down again.
const STARTUP_TIMEOUT_MS = 60_000;

// The shell's texts before Python runs, copied from webapp/ui/ringboard_ui/locales.
// tests/webapp/test_i18n.py checks that they match the catalogues and cover every
// data-i18n key of index.html. The block between the markers must stay valid JSON.
const BOOT_TEXTS = /* BOOT_TEXTS_BEGIN */ {
  "en": {
    "shell.loading": "Starting Ringboard…",
    "boot.failed": "Ringboard could not start. Check the network connection, then reload the page.",
    "boot.reload": "Reload",
    "section.active": "Active Calls",
    "section.history": "Call History",
    "empty.active": "No active calls",
    "empty.history": "No calls yet",
    "status.connecting": "Connecting…",
    "status.connecting.hint": "Connecting to the Ringboard server",
    "pairing.title": "Pair this browser",
    "pairing.intro": "Enter the PIN you were given. This browser needs it only once.",
    "pairing.pin_label": "PIN",
    "pairing.submit": "Pair",
    "filter.all": "All calls",
    "filter.answered": "Answered",
    "filter.answered_elsewhere": "Answered elsewhere",
    "filter.internal": "Internal",
    "filter.missed": "Missed",
    "filter.open": "Missed, not done",
    "filter.outgoing": "Outgoing",
    "filter.transferred": "Transferred",
    "history.filter": "Show",
    "history.more": "Show older calls",
    "history.search": "Search name, number or company",
    "settings.close": "Close",
    "settings.hidden": "Hidden",
    "settings.language": "Language",
    "settings.language.browser": "Browser language",
    "settings.notifications": "Notifications",
    "settings.notify.all": "All calls, also outgoing",
    "settings.notify.incoming": "Incoming calls",
    "settings.notify.incoming_internal": "Incoming and internal calls",
    "settings.notify_calls": "Notify for",
    "settings.off": "Off",
    "settings.on": "On",
    "settings.open": "Settings",
    "settings.pin": "New PIN",
    "settings.pin_submit": "Pair again",
    "settings.save": "Save",
    "settings.show_history": "Call History",
    "settings.shown": "Shown",
    "settings.title": "Settings"
  },
  "de": {
    "shell.loading": "Ringboard wird gestartet…",
    "boot.failed": "Ringboard konnte nicht starten. Prüfen Sie die Netzwerkverbindung und laden Sie die Seite neu.",
    "boot.reload": "Neu laden",
    "section.active": "Aktive Anrufe",
    "section.history": "Anrufliste",
    "empty.active": "Keine aktiven Anrufe",
    "empty.history": "Noch keine Anrufe",
    "status.connecting": "Verbinde…",
    "status.connecting.hint": "Verbindung zum Ringboard-Server wird aufgebaut",
    "pairing.title": "Diesen Browser koppeln",
    "pairing.intro": "Geben Sie die PIN ein, die Sie erhalten haben. Dieser Browser braucht sie nur einmal.",
    "pairing.pin_label": "PIN",
    "pairing.submit": "Koppeln",
    "filter.all": "Alle Anrufe",
    "filter.answered": "Angenommen",
    "filter.answered_elsewhere": "Anderswo angenommen",
    "filter.internal": "Intern",
    "filter.missed": "Verpasst",
    "filter.open": "Verpasst, offen",
    "filter.outgoing": "Ausgehend",
    "filter.transferred": "Weitergeleitet",
    "history.filter": "Anzeigen",
    "history.more": "Ältere Anrufe anzeigen",
    "history.search": "Name, Nummer oder Firma suchen",
    "settings.close": "Schliessen",
    "settings.hidden": "Ausblenden",
    "settings.language": "Sprache",
    "settings.language.browser": "Sprache des Browsers",
    "settings.notifications": "Benachrichtigungen",
    "settings.notify.all": "Allen Anrufen, auch ausgehenden",
    "settings.notify.incoming": "Eingehenden Anrufen",
    "settings.notify.incoming_internal": "Eingehenden und internen Anrufen",
    "settings.notify_calls": "Benachrichtigen bei",
    "settings.off": "Aus",
    "settings.on": "Ein",
    "settings.open": "Einstellungen",
    "settings.pin": "Neue PIN",
    "settings.pin_submit": "Neu koppeln",
    "settings.save": "Speichern",
    "settings.show_history": "Anrufliste",
    "settings.shown": "Anzeigen",
    "settings.title": "Einstellungen"
  },
  "fr": {
    "shell.loading": "Démarrage de Ringboard…",
    "boot.failed": "Ringboard n’a pas pu démarrer. Vérifiez la connexion réseau, puis rechargez la page.",
    "boot.reload": "Recharger",
    "section.active": "Appels en cours",
    "section.history": "Historique des appels",
    "empty.active": "Aucun appel en cours",
    "empty.history": "Aucun appel pour l’instant",
    "status.connecting": "Connexion…",
    "status.connecting.hint": "Connexion au serveur Ringboard en cours",
    "pairing.title": "Associer ce navigateur",
    "pairing.intro": "Saisissez le code PIN qui vous a été remis. Ce navigateur n’en a besoin qu’une fois.",
    "pairing.pin_label": "Code PIN",
    "pairing.submit": "Associer",
    "filter.all": "Tous les appels",
    "filter.answered": "Répondus",
    "filter.answered_elsewhere": "Répondus ailleurs",
    "filter.internal": "Internes",
    "filter.missed": "Manqués",
    "filter.open": "Manqués, à traiter",
    "filter.outgoing": "Sortants",
    "filter.transferred": "Transférés",
    "history.filter": "Afficher",
    "history.more": "Afficher les appels plus anciens",
    "history.search": "Chercher un nom, un numéro ou une entreprise",
    "settings.close": "Fermer",
    "settings.hidden": "Masqué",
    "settings.language": "Langue",
    "settings.language.browser": "Langue du navigateur",
    "settings.notifications": "Notifications",
    "settings.notify.all": "Tous les appels, sortants compris",
    "settings.notify.incoming": "Appels entrants",
    "settings.notify.incoming_internal": "Appels entrants et internes",
    "settings.notify_calls": "Notifier pour",
    "settings.off": "Désactivées",
    "settings.on": "Activées",
    "settings.open": "Paramètres",
    "settings.pin": "Nouveau code PIN",
    "settings.pin_submit": "Associer à nouveau",
    "settings.save": "Enregistrer",
    "settings.show_history": "Historique des appels",
    "settings.shown": "Affiché",
    "settings.title": "Paramètres"
  },
  "it": {
    "shell.loading": "Avvio di Ringboard…",
    "boot.failed": "Impossibile avviare Ringboard. Verificare la connessione di rete, poi ricaricare la pagina.",
    "boot.reload": "Ricarica",
    "section.active": "Chiamate attive",
    "section.history": "Cronologia chiamate",
    "empty.active": "Nessuna chiamata attiva",
    "empty.history": "Ancora nessuna chiamata",
    "status.connecting": "Connessione…",
    "status.connecting.hint": "Connessione al server Ringboard in corso",
    "pairing.title": "Associa questo browser",
    "pairing.intro": "Inserire il PIN ricevuto. Questo browser ne ha bisogno una sola volta.",
    "pairing.pin_label": "PIN",
    "pairing.submit": "Associa",
    "filter.all": "Tutte le chiamate",
    "filter.answered": "Risposte",
    "filter.answered_elsewhere": "Risposte altrove",
    "filter.internal": "Interne",
    "filter.missed": "Perse",
    "filter.open": "Perse, da gestire",
    "filter.outgoing": "In uscita",
    "filter.transferred": "Trasferite",
    "history.filter": "Mostra",
    "history.more": "Mostra chiamate precedenti",
    "history.search": "Cerca nome, numero o azienda",
    "settings.close": "Chiudi",
    "settings.hidden": "Nascosta",
    "settings.language": "Lingua",
    "settings.language.browser": "Lingua del browser",
    "settings.notifications": "Notifiche",
    "settings.notify.all": "Tutte le chiamate, anche in uscita",
    "settings.notify.incoming": "Chiamate in arrivo",
    "settings.notify.incoming_internal": "Chiamate in arrivo e interne",
    "settings.notify_calls": "Notifica per",
    "settings.off": "Disattivate",
    "settings.on": "Attive",
    "settings.open": "Impostazioni",
    "settings.pin": "Nuovo PIN",
    "settings.pin_submit": "Associa di nuovo",
    "settings.save": "Salva",
    "settings.show_history": "Cronologia chiamate",
    "settings.shown": "Visibile",
    "settings.title": "Impostazioni"
  }
} /* BOOT_TEXTS_END */;

/** Return the first supported language of the browser's list, as the UI's i18n does. */
function chooseLanguage() {
  const tags = navigator.languages?.length ? navigator.languages : [navigator.language ?? ""];
  for (const tag of tags) {
    const primary = String(tag).trim().toLowerCase().replace("_", "-").split("-")[0];
    if (SUPPORTED_LANGUAGES.includes(primary)) {
      return primary;
    }
  }
  return "en";
}

/** Set the shell's texts and the page language from BOOT_TEXTS. */
function translateShell(language) {
  const texts = BOOT_TEXTS[language] ?? BOOT_TEXTS.en;
  document.documentElement.lang = language;

  for (const node of document.querySelectorAll("[data-i18n]")) {
    const text = texts[node.dataset.i18n];
    if (text !== undefined) {
      node.textContent = text;
    }
  }
  for (const node of document.querySelectorAll("[data-i18n-title]")) {
    const text = texts[node.dataset.i18nTitle];
    if (text !== undefined) {
      node.title = text;
    }
  }
}

/** Return the absolute Pyodide base URL from the meta tag the agent fills in. */
function pyodideBaseUrl() {
  const content = document.querySelector('meta[name="ringboard-pyodide"]')?.content ?? "";
  if (!content || content.includes("{{")) {
    throw new Error(
      "the page has no Pyodide path: the server did not fill in the ringboard-pyodide meta tag",
    );
  }
  const base = new URL(content, location.href);
  if (!base.pathname.endsWith("/")) {
    base.pathname += "/";
  }
  return base.href;
}

/** Fetch the UI's zip; revalidated on every start because its URL has no version. */
async function fetchUiZip() {
  const response = await fetch(UI_ZIP_URL, { cache: "no-cache" });
  if (!response.ok) {
    throw new Error(`GET ${UI_ZIP_URL} failed: HTTP ${response.status}`);
  }
  return response.arrayBuffer();
}

/** Import pyodide.mjs from the base URL and start the interpreter. */
async function loadRuntime(baseUrl) {
  const { loadPyodide } = await import(new URL("pyodide.mjs", baseUrl).href);
  const pyodide = await loadPyodide({ indexURL: baseUrl });
  performance.mark("ringboard:pyodide");
  return pyodide;
}

/** Unpack the UI into UI_DIR, put it on sys.path, import the UI and start it. */
function startUi(pyodide, zip) {
  pyodide.unpackArchive(zip, "zip", { extractDir: UI_DIR });

  const sys = pyodide.pyimport("sys");
  const path = sys.path;
  path.insert(0, UI_DIR);
  path.destroy();
  sys.destroy();
  performance.mark("ringboard:unpacked");

  const main = pyodide.pyimport(UI_MODULE);
  try {
    main.start();
  } finally {
    main.destroy();
  }
}

/**
 * Show #boot-error with the first reason reported; the details are in English for
 * whoever supports the office.
 */
function showFailure(error) {
  const state = document.documentElement.dataset.ringboard;
  if (state === "live" || state === "failed") {
    return;
  }
  console.error("Ringboard could not start:", error);
  document.documentElement.dataset.ringboard = "failed";
  document.getElementById("loading").hidden = true;
  document.getElementById("boot-error-detail").textContent = String(error?.message ?? error);
  document.getElementById("boot-error").hidden = false;
}

/** Report a script-src violation before the UI runs: Pyodide would otherwise hang. */
function onPolicyViolation(event) {
  if (event.violatedDirective.startsWith("script-src")) {
    showFailure(new Error(
      `the Content-Security-Policy blocked ${event.blockedURI || "a script"} (${event.violatedDirective}); ` +
      "Pyodide needs script-src 'self' 'wasm-unsafe-eval'",
    ));
  }
}

/**
 * Register /sw.js. Browsers offer service workers to secure contexts only (HTTPS or
 * localhost); elsewhere `navigator.serviceWorker` is missing and nothing happens. A
 * failed registration does not stop the page, so it is only logged.
 */
function registerServiceWorker() {
  navigator.serviceWorker?.register("/sw.js").catch((error) => {
    console.warn("Ringboard's service worker could not be registered:", error);
  });
}

async function boot() {
  performance.mark("ringboard:boot");
  translateShell(chooseLanguage());
  registerServiceWorker();
  document.getElementById("boot-reload").addEventListener("click", () => location.reload());
  document.addEventListener("securitypolicyviolation", onPolicyViolation);
  const timer = setTimeout(
    () => showFailure(new Error(`Python did not start within ${STARTUP_TIMEOUT_MS / 1000} s`)),
    STARTUP_TIMEOUT_MS,
  );

  try {
    const baseUrl = pyodideBaseUrl();
    const zip = fetchUiZip();
    const [pyodide, zipBuffer] = await Promise.all([loadRuntime(baseUrl), zip]);
    startUi(pyodide, zipBuffer);
  } finally {
    clearTimeout(timer);
    document.removeEventListener("securitypolicyviolation", onPolicyViolation);
  }

  // Python came up after a timeout or violation was reported: take the message down.
  document.getElementById("boot-error").hidden = true;
}

boot().catch(showFailure);
