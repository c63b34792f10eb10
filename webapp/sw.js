// Ringboard's service worker, served as /sw.js so that its scope is the whole page.
//
// Push: the agent sends a Web Push message for each change of a ringing call (payloads
// in docs/push-protocol.md). The worker shows the call as a system notification whose
// tag is the call id, replaces it when the caller's name arrives, and closes it once
// the call is answered, here or elsewhere, or ends. A visible page that already shows
// the call gets no second alert unless the user asked for both.
//
// Click: focuses an open Ringboard page and asks it to show the call with
// {type: "show-call", call_id}, or opens the page at #call=<id>.
//
// Offline: the shell (/, /app/*) is fetched network-first and kept in a cache, so the
// page starts and shows its own "offline" state when the agent is down instead of the
// browser's error page. /api/* is never cached. Pyodide under /vendor/ has versioned,
// immutable URLs and is served cache-first.
//
// Messages with the page (postMessage):
// - worker to page {type: "show-call", call_id}: scroll to the call and highlight it.
// - worker to page {type: "has-call", call_id} with a MessagePort: the page answers
//   {shown: true|false} on the port, whether it shows that call right now.
// - page to worker {type: "active-calls", call_ids: [...]}: the calls the page knows are
//   live; the worker closes ringing notifications of any other call.
//
// The decisions are plain functions of their inputs (planNotification,
// chooseClientAction, cacheStrategy, ...), so the tests run them inside the real worker
// with stand-in objects.

const SHELL_CACHE = "ringboard-shell-v1";
const VENDOR_CACHE = "ringboard-vendor-v1";
const KNOWN_CACHES = [SHELL_CACHE, VENDOR_CACHE];

// The shell and the UI's zip: enough for the page to start and report the agent offline.
const SHELL_PATHS = ["/", "/app/boot.js", "/app/style.css", "/app/ui.zip"];
const VENDOR_PREFIX = "/vendor/";
const PYODIDE_PREFIX = "/vendor/pyodide/";
// Live data, the health check and metrics always go to the agent.
const NEVER_CACHED_PREFIXES = ["/api/", "/healthz", "/metrics"];

const PAYLOAD_VERSION = 1;

// A notification still shown as ringing after this long is closed at the next push or
// start of the worker: its closing push was lost (the browser was offline past its TTL).
const RING_STALE_MS = 10 * 60 * 1000;

// How long the worker waits for a visible page to say whether it shows the call. A page
// that does not reply in time is taken to show it, because it is visible and live.
const PAGE_ANSWER_TIMEOUT_MS = 300;

const ICON = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAGAAAABgCAYAAADimHc4AAAPu0lEQVR4nOydCXRU9b3Hv/87CUkIWSCBJGRnEQIiixEhYjaViAsqyoPWbMX1+Xxtteqxr/QdrO/5nq/F5bS2dashAemBY/vUglQwCYgYZEcwCIJkQ0IkBEISssz8+/vdkpwkc+9kJnMnMxPyOWeYO3fmDpnf7/5/6//+rw88mJjskgnCJKcIKZLoZZKATKDnUEAESyBICITz56TE9wJopK0L9LJBQpyk53JI8ZVFyvLq1RnfwEMR8BAS8ksizcAcYaEH5BwpcJ2AGA4DkFI20Q/dTYr5XEKWtZt8dpx+J7UOHoBbFTB6ccmI4cOxhDYfpMccDCxlFog3ZPOwP1evT2mBm3CLAqLzS2b4SDxOpmMJmZERcCvyPIlhdYfAWzUFGfsxwAyoAuJySuZBwbP0n94OD4T8ygZY8L+VRRnbMUAMiALi84pvl1I8S2f7PHgBNDK3k3l6obow/SO4GJcqID5na5IU5reEECnwQsh57xDS9GBFUVo5XIRLFDDq/rLgEabm5fT1T9BZ7wMvhkZDB4R8qcMv+LlTbyQ3w2AMV0B89rZZ0tSxjkLI8RhEUPh6XJh9/qVidepeGIgCw5AiPq/kKZjMZYNN+Iz6m+i3xeYWP8m/FQZhyBdF5Hw2xk9pLaI/cj6uAGg0fNxq8cupLbrhDJzEaQVcdrSbydFG4wqCfEM1zKasyjWpX8EJnDJBsXmfzIdi/vxKEz5DwUWM8OnYEZu3NRVO0G8FxOWU5lCRbCP9KSG4YhEhCswfx+aV/gj9pF8mKC635BE6A/6IIbqTXbEqYw0cxGEFqFkt8AE5XAMjKO9HzRekWFRZlP6hI8c5pICYnOI0kyI20aY/htDikkWI1KqC9F32HmC3AuLu3zZF+JjLaDMIQ+hC5YuzJNW0ylWZh+35vF1mZOTizSEk/A0YEn6fUEQYRk8fUIMp1J7P26WAoACf1+kpAUPYBfnHcRaLfUFKnwqIzSnJp4hnCYZwCJYZy67Pz9l6M+aBHaOU9tYKo7tWU+NH8Kjq83PlVRdxvqkDXkxjhzQn1hTefFbvAzalQMJ/yQjhhwf74pHb4jBrfAiunRjs0LEf7jyDf/+DU9m+OwkywbSSnvP1PqA7Ai6HnKVwkiWpUfjF0vEIHt7/tsAr/39SfXgtFstNFUU3FWu9pe0DFh8aZhJ4HU7yzhPT8OKySU4Jn8m/JQZejaK8hhVSU9aaO2P9635IXmQSnOAndyUgY3oYjCA00Ae3zx4NL2Zy7PHSXK03tLUi5M/hzP8WE0gKiIeRLE0dC2+GZPqs1n4rHxCbX3K3IvFX9BM/XwUbfpWMCVHak9r2HLuAvcfPo+mSWfN9cvrq6NFi7pOf47v6VngrZoEF1QUZm7rvszLOioU0Jfrfp7nuqhBd4T/++6/wty/6biJNHBuI266zNjlL06Lw8l9PwlsxWdRR0EMBPUxQTH5JOgn/ejhBdJh2na7wkxq7hM+s3XpKc//iG6Pg1QiRFp1f0mMKZg8FKBb9eNVeYsK1FbBxl/1zYT89dA7V31+y2j92lB/Sp42CN2Oy4NHur7sUMPbh3WQ35H1wEj3r1dxqhiO8W6o9CpakefcoIPksQnpJl+nvUoCprXEhVfIC4SR6TjJ2tGMthLWl31H+Iq323zwjDCNH+MKLCYpNwB2dL7oUICxYCgM4dfaS5n4936DHuYvt2LzfuoTi66PgvnmR8GZEN1P/TwVQ5iuEvBUGUFmnrYCxoxxvoq0pHrRmKAsLNvrxtqqAmMC6FNrtBwPQHQHhjn/9qXrt7+Iwd2qcmy8rcA7/mIiAubyhKoCin3QYREubBQ0aJeSY8AA4ws8WJWLLC7N13x8b5t1t6U6Zq95YQKYbOU+3msxQaGDPMzTOTifMidz/PTAZiRG2FdZ0yav7BJdlziOA7D+9MvT6LC3TEehvwrhI20J9ICsG6/9jZp/CL9hcgx3lDfBqOOElP6BEB9bNMsr+d7L/xAXN/fNn6Vc0500diV/+YAJswfWj59Z8gxVrjmEQ4B8dETBTUcyYDIP5eO/3mvsXXKevgHGRtq9ILTlYj5t+/gXe2VyNwQLL3odCogQYzDenmnGytgUJvUzJ9MQgRIQOQ21Dm9UxlWf0rxRdXngUq3VCUm+GZc9RkOEjgPn7Hu1RMH9WuOb+0i/r8W2tthKmeHfIaQtVAXZNIHKUT/brmKFkfTP04rrjmvuXUl+5L8fspUQqFA65RAFfHD2PC83WoeL1k0MxgiIiLTbRqDl0stFqv0J/5e8em4JhPh6zsoIhsOxdNgIYLWdsImE+kBWre8x/rtaOcKbGB2HlQ0kYZJAChOsUsFknGnr0tliMIWesxd5vLqgjQYs7rx+Dx+80ttfsVkj2ptAZef9FWy65lvf4d81YlBKJkMCeX88VzdBAX2zepy3onV834K65EZqmKmXKSByqaMSJ07bX1/AfppDZmkpZ9STcOScCkSP9UEVNHi2z6EZ8WQHLXaUA5vS5Vtwxe4zVfp6euIUc9RmNkJSbNzuPNOCH6dozIRaSQCvrWlBe1QQ93vzx1bhlZriq7PDgYZg9KRTL5seoCR/1PfAtKbDdLOFmzKyAp0gBLqtscU6QSm3EqFHWyTY339d/elrzOFZMBeUGt16rHTVl0X4eWVspfO0N9wt4KqQWXMRjxbAfmjB2uDoiqr7XrroOAGdZAT8lBbg00D52qkmdotgbbtJ8Xd2kKkmLI3SG8yTeWRO055POHB+MlKRQ1ZRdareo+9i3/OmJaer0GFv4mAQmx47AvaQsfvDkryoaVY0tjrVOnUKyAqbnPUhjMhwuhNuUfLZfFW3d8byBbPqGL+p0bfO2Q/VqhTRutHYeEB3urzZoGpvN+JJCWLb7k2Ic66yGDPfBHAqPeVTMTRoJi5Q2zZuB1Ir43OIyZ6ei2EMsCerT32gXXY/VNOOe5/fgos5krQByqC8/MoXMke3zhNuYRvWLd359Hg+9+qVrnbaUO00h0/PvIJ/kknJEd/iH6JmTsGBfXJMYjL/sqNU8toOcJc8pau+wqCNGj4Bh2gke16U+2HkG46IC+zRNnfD0Gj7ucMVFuAoJsYcVMGOgFlLadbQBmdPDMDrEOgeIGxOghopb9p+1cfx5HPi2ETeTEx3mY/9Vsste/hLvln6HP2yoVFumI4N87eqoNVzs0A2VDeJ9U/A1+TGkgLsxAPCZzNnxPSkRaoOmN1cnBKk1f07G9OCzctPuOqRfE6bmEn3x5qYqrOsWaR2uvKi+/qCslv4eKoNTf5lzBi1OnG7GR7tdt7giuZq3TUGz8v2Vf65aOCBwjL/9cD0W3RCpxui9Sb16FOob29UzXY9zdGbyvCFWKJs0jmi04OrqY68dhlljfhF/Bzv4P26sVHOKtGlhVt9ztKbJpQowK3hRqalt2UfbAxoIc4TBE3X1+FXORPVhi1YKO199/yTmPVWG9z7TziWefKNc/VxfbNl3VncUuJBLLHsFH93WSmPhAAaY4gNn1faiHrk3RWP109PJcZtsfk/d+Tb87M0jyFq+qyspq6q7hEd/ewj7jl+Ax0IREMteLUGQNy6jwefyULQ33F4cHxWA7Ezt1W64bPDhimRk//qA5mTd7nBCl7fyILwFknkpP6vjTioohZtYXnish5PsDbc1NzyXjNlXDa5VcSwKeNmHywow+W2TkH0bSxfxzNtH8N9/Pg6LTm2Maz5rn52B/8mfpF7y6u2wrJU2n528rSqg+u2UeiHxKdwIh4vLXj6IFp1p7NzI+UF6FLb9eg6evCdRzY69FZZ15bs3nuPtrl9hkaIAbqb0YD3ufn6vzevAhvuZ8OO74vHZyrnIv8WYldL0wti2DtcYhe6y7lJAG9rWU2LgurzbTtiZLvjlLhw4YTuCGUXZ7Ir7J2LXqylqyMrFtP5e2hY/RrvQxzUqo+Gl9M0BQes6X3fFeE0HV7dTWWIS/YgZcDNcWn5v+2mKkIZrVlC7wxn19HHBag/g/oyx6oUgPEG45qz9qc2j1DuYMd66RvX6R5SknTE6RRJrq/90w/quV93f4ov0TBIl8CC4efLMfeMwMdrxezlweZpLF9wa/ZbKCpwZ8wjrnpxx1+2F/Ks0j5/+b9sNXyzELJBRXZBR2vnaatBSebqUr+aDh3EvlS6eujdRs7PmKOxjOIHjOpDeFBmuvtrK1vuFlFsrCjPTu++y+t+DZuafJseQDQ+Dl64p3FKj1nCmJQapzri/cFk8giqvehVVLp3/6KWDVLcy1gmbFfGvF/av6pH+a7qtuNySXeQLkuHBsGlaOGeMOlXFaJ6mvGS9jeSwP1Dsv7dyVea1vfdrnkbBM/MbSTNOX7LqSjpLxVzNPEp23USh5Pgo5+/587sPK/DWJuNnYEshHqOz/0jv/dqB2wqpxJ0o3enpo6A3bJZuTQ6nURGh1pF8TfbHpeysH//9YRxyQQeMzv49lYkZs7FCWNk03b8wLq/4WjqSlCD6b2zdCAufG/YclnJ7MTY8ADGj/dXedCw1+HmeKXfYyo40qA+e7CVdME2I4n6zsPjM1rvvgM1ThHzBKzQKfoIh+g0p9dXKwoyf6r1vs6DS0oLlfJc6DNEveIn7Vtn2C1ufsamAuvUZF6lsutidlVJvhWVmkTK7tijL5gSjPkuKatYmxfMYwjFIZtVFmVv7+pidYYIU8bmln9CnMzCEPZRWrErPVAvPfWBnUV3IDpjJFGFQXB/qSlhGHdJ8nz3CZxxbvj67ZIKi4PPO28gO0RMOWCwWzHXk9rkOtZX4i80K7qTNdgzRm3aWjaP3Lna4r1dTkFFGWn4YQ/SAZcKygYP0q7FaVZRRQMbuIfW2HVc4nOlaIJapMukHTl33yfeToaf3jF5rwnuQrWYh7u69FqgjOH3h7eUuGi/06rKrLT0Ted4C08KqVWnb4ASGXPmsRkcm/IW+bBquACjLPYx234WV7954Ak5iyOQa9vyKwGwKfAsw+HlNESLZCOEzhl/7TxXUPMoTfotBdsMfnrJDZ352VWHm+zAQw6eXUel1VbuiTKU/dh0GCST89WYzkowWPuPS1S+ic0szTMLyphffX/iIBcojzjpaW7h++ZGHd/vGtVxcCkU+7S1Oms74Q/RYWRUQtAZvJLs06x/Q9V9ic4qzyFk/AyEy4YnwpDQpf1NRlLkRA4RbFuCJz906E8LyDGWRiz2g59xO/mqtkKZXKgrT9mGAcfsKSLyePiVyS+j0W8h3oMMAQAI/Qf+8J6VYRyWE3XAjHrUEVWR+SYKvFAuElFkUyrKZMiqUbSSbXsz3gm9XxMbTBRkn4SF49BpgaoYtRBL1NqbQyyQBmQC15CGCKekL6uxLcB2efkgjbfGc9gYJcZKey6WQ5dIsvnK0RDyQ/AMAAP//jQaq8wAAAAZJREFUAwCx7pZpo6VLWwAAAABJRU5ErkJggg==";

const SUPPORTED_LANGUAGES = ["en", "de", "fr", "it"];

// call.* keys have the same texts as the page's catalogues in webapp/ui/ringboard_ui/locales.
const TEXTS = {
  en: {
    "push.incoming": "Incoming call",
    "push.internal": "Internal call",
    "push.outgoing": "Outgoing call",
    "push.missed": "Missed call",
    "push.test.body": "Notifications work on this device.",
    "push.unreadable.body": "Open Ringboard to see the calls.",
    "call.withheld": "Withheld number",
    "call.unknown": "Unknown",
    "call.extension": "Ext. {extension}",
    "call.called": "via {number}",
    "offline.title": "Ringboard is offline",
    "offline.body": "The Ringboard server cannot be reached. Reload the page once it is running again.",
  },
  de: {
    "push.incoming": "Eingehender Anruf",
    "push.internal": "Interner Anruf",
    "push.outgoing": "Ausgehender Anruf",
    "push.missed": "Verpasster Anruf",
    "push.test.body": "Benachrichtigungen funktionieren auf diesem Gerät.",
    "push.unreadable.body": "Öffnen Sie Ringboard, um die Anrufe zu sehen.",
    "call.withheld": "Unterdrückte Nummer",
    "call.unknown": "Unbekannt",
    "call.extension": "Nst. {extension}",
    "call.called": "über {number}",
    "offline.title": "Ringboard ist offline",
    "offline.body": "Der Ringboard-Server ist nicht erreichbar. Laden Sie die Seite neu, sobald er wieder läuft.",
  },
  fr: {
    "push.incoming": "Appel entrant",
    "push.internal": "Appel interne",
    "push.outgoing": "Appel sortant",
    "push.missed": "Appel manqué",
    "push.test.body": "Les notifications fonctionnent sur cet appareil.",
    "push.unreadable.body": "Ouvrez Ringboard pour voir les appels.",
    "call.withheld": "Numéro masqué",
    "call.unknown": "Inconnu",
    "call.extension": "Int. {extension}",
    "call.called": "via {number}",
    "offline.title": "Ringboard est hors ligne",
    "offline.body": "Le serveur Ringboard est injoignable. Rechargez la page quand il fonctionnera de nouveau.",
  },
  it: {
    "push.incoming": "Chiamata in arrivo",
    "push.internal": "Chiamata interna",
    "push.outgoing": "Chiamata in uscita",
    "push.missed": "Chiamata persa",
    "push.test.body": "Le notifiche funzionano su questo dispositivo.",
    "push.unreadable.body": "Apri Ringboard per vedere le chiamate.",
    "call.withheld": "Numero nascosto",
    "call.unknown": "Sconosciuto",
    "call.extension": "Int. {extension}",
    "call.called": "tramite {number}",
    "offline.title": "Ringboard è offline",
    "offline.body": "Il server Ringboard non è raggiungibile. Ricarica la pagina quando sarà di nuovo attivo.",
  },
};

// Texts -------------------------------------------------------------------------------

/** Return the first supported language of the browser's list, as boot.js does. */
function chooseLanguage(languages) {
  for (const tag of languages ?? []) {
    const primary = String(tag).trim().toLowerCase().replace("_", "-").split("-")[0];
    if (SUPPORTED_LANGUAGES.includes(primary)) {
      return primary;
    }
  }
  return "en";
}

function textsFor(language) {
  return TEXTS[language] ?? TEXTS.en;
}

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (match, name) => String(values[name] ?? match));
}

function formatClock(isoTime, language) {
  const time = Date.parse(isoTime ?? "");
  if (Number.isNaN(time)) {
    return null;
  }
  return new Intl.DateTimeFormat(language, { hour: "2-digit", minute: "2-digit" }).format(time);
}

/** Return the title and body of a call's notification: who calls, from which company, on which line. */
function notificationContent(payload, language) {
  const texts = textsFor(language);
  const call = payload.call;
  const remote = call.remote ?? {};
  const caller = payload.caller ?? {};

  const number = remote.withheld ? texts["call.withheld"] : remote.display ?? null;
  const name = caller.name ?? remote.name ?? null;
  const title = name ?? number ?? texts["call.unknown"];

  const lines = [];
  if (caller.company && caller.company !== title) {
    lines.push(caller.company);
  }
  if (name && number) {
    lines.push(number);
  }

  const parts = [];
  if (payload.action === "missed") {
    parts.push(texts["push.missed"]);
    const clock = formatClock(call.started_at, language);
    if (clock) {
      parts.push(clock);
    }
  } else if (call.direction === "internal") {
    parts.push(texts["push.internal"]);
  } else if (call.direction === "outbound") {
    parts.push(texts["push.outgoing"]);
  } else {
    parts.push(texts["push.incoming"]);
  }
  if (call.called) {
    parts.push(fill(texts["call.called"], { number: call.called }));
  }
  if (call.extension) {
    parts.push(fill(texts["call.extension"], { extension: call.extension }));
  }
  lines.push(parts.join(" · "));
  return { title, body: lines.join("\n") };
}

// Push ----------------------------------------------------------------------------------

/**
 * Decide what a call push does to the call's notification.
 *
 * existing: whether a notification of this call is shown now.
 * pageShowsCall: whether a visible page shows the call (null when not asked).
 * Returns {op: "show", title, options}, {op: "close", tag} or {op: "none", reason}.
 */
function planNotification(payload, existing, pageShowsCall, language) {
  const call = payload.call;
  const tag = call.id;
  let action = payload.action;
  // A ringing notification for a call that no longer rings would lie.
  if ((action === "ring" || action === "update") && call.state !== "ringing") {
    action = "close";
  }

  if (action === "close") {
    return existing ? { op: "close", tag } : { op: "none", reason: "not shown" };
  }

  const { title, body } = notificationContent(payload, language);
  const data = { kind: "call", call_id: call.id, ringing: action !== "missed", started_at: call.started_at ?? null };
  const options = {
    tag,
    body,
    icon: ICON,
    lang: language,
    data,
    timestamp: Date.parse(call.started_at ?? "") || Date.now(),
  };

  if (action === "missed") {
    if (!existing) {
      return { op: "none", reason: "not shown" };
    }
    return { op: "show", title, options: { ...options, renotify: false, silent: true, requireInteraction: false } };
  }

  if (action !== "ring" && action !== "update") {
    return { op: "none", reason: `unknown action ${action}` };
  }
  // A ring alerts. An update alerts only when it is the first push the browser gets of the
  // call, because the push service replaced an undelivered ring with it (same Topic).
  const alerts = action === "ring" || !existing;
  if (alerts && pageShowsCall && payload.alert !== "both") {
    return { op: "none", reason: "a visible page shows the call" };
  }
  return {
    op: "show",
    title,
    options: { ...options, renotify: action === "ring", silent: !alerts, requireInteraction: true },
  };
}

/** Return whether the visible pages' replies (true, false, or null for none) mean the call is on screen. */
function pagesShowCall(answers) {
  return answers.some((answer) => answer !== false);
}

/** Return the notifications of ringing calls whose start is more than RING_STALE_MS ago. */
function staleNotifications(notifications, now) {
  return notifications.filter((notification) => {
    const data = notification.data ?? {};
    const started = Date.parse(data.started_at ?? "");
    return data.kind === "call" && data.ringing && !Number.isNaN(started) && now - started > RING_STALE_MS;
  });
}

/** Return the notifications of ringing calls that are not in the page's list of live calls. */
function endedCallNotifications(notifications, activeCallIds) {
  const active = new Set(activeCallIds);
  return notifications.filter((notification) => {
    const data = notification.data ?? {};
    return data.kind === "call" && data.ringing && !active.has(data.call_id);
  });
}

/** Ask one page whether it shows the call; resolve to true, false, or null without a reply in time. */
function askPage(client, callId, timeoutMs) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => {
      channel.port1.close();
      resolve(null);
    }, timeoutMs);
    channel.port1.onmessage = (event) => {
      clearTimeout(timer);
      channel.port1.close();
      const shown = event.data?.shown;
      resolve(typeof shown === "boolean" ? shown : null);
    };
    try {
      client.postMessage({ type: "has-call", call_id: callId }, [channel.port2]);
    } catch (error) {
      clearTimeout(timer);
      resolve(null);
    }
  });
}

async function visiblePageShowsCall(callId) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const visible = windows.filter((client) => client.visibilityState === "visible");
  if (visible.length === 0) {
    return false;
  }
  const answers = await Promise.all(visible.map((client) => askPage(client, callId, PAGE_ANSWER_TIMEOUT_MS)));
  return pagesShowCall(answers);
}

function readPayload(data) {
  if (!data) {
    return null;
  }
  try {
    const payload = data.json();
    return payload && payload.version === PAYLOAD_VERSION ? payload : null;
  } catch (error) {
    return null;
  }
}

async function handlePush(data) {
  const language = chooseLanguage(self.navigator.languages);
  const registration = self.registration;
  const shown = await registration.getNotifications();
  for (const notification of staleNotifications(shown, Date.now())) {
    notification.close();
  }

  const payload = readPayload(data);
  if (payload?.push === "test") {
    await registration.showNotification("Ringboard", {
      tag: "ringboard-test",
      body: textsFor(language)["push.test.body"],
      icon: ICON,
      lang: language,
      data: { kind: "test" },
    });
    return;
  }
  if (payload?.push !== "call" || typeof payload.call?.id !== "string") {
    // Chrome shows its own "updated in the background" notice for a push that shows
    // nothing; an own notice at least names Ringboard.
    await registration.showNotification("Ringboard", {
      tag: "ringboard-unreadable",
      body: textsFor(language)["push.unreadable.body"],
      icon: ICON,
      lang: language,
      data: { kind: "unreadable" },
    });
    return;
  }

  const existing = shown.filter((notification) => notification.tag === payload.call.id);
  const mayAlert = payload.action === "ring" || (payload.action === "update" && existing.length === 0);
  const pageShowsCall = mayAlert && payload.alert !== "both" ? await visiblePageShowsCall(payload.call.id) : null;
  const plan = planNotification(payload, existing.length > 0, pageShowsCall, language);
  if (plan.op === "show") {
    await registration.showNotification(plan.title, plan.options);
  } else if (plan.op === "close") {
    // NOTE: a push that leaves nothing on screen while no page is visible spends Chrome's
    // per-site allowance; when it runs out Chrome shows "This site has been updated in
    // the background". The allowance grows with use of the site, so a daily page rarely
    // runs out.
    for (const notification of existing) {
      notification.close();
    }
  }
}

self.addEventListener("push", (event) => {
  event.waitUntil(handlePush(event.data));
});

// Click ---------------------------------------------------------------------------------

/**
 * Decide what a click does: focus a Ringboard page and tell it which call to show, or
 * open the page at #call=<id>. Prefers a focused page, then a visible one, then any.
 * Returns {type: "focus", clientId, url, message} or {type: "open", url}.
 */
function chooseClientAction(windows, callId, scopeUrl) {
  const scope = new URL(scopeUrl);
  const url = callId ? new URL(`#call=${encodeURIComponent(callId)}`, scope).href : scope.href;
  const pages = windows.filter((client) => String(client.url).startsWith(scope.href));
  const page =
    pages.find((client) => client.focused) ??
    pages.find((client) => client.visibilityState === "visible") ??
    pages[0];
  if (!page) {
    return { type: "open", url };
  }
  return { type: "focus", clientId: page.id, url, message: callId ? { type: "show-call", call_id: callId } : null };
}

/** Carry out chooseClientAction with a Clients object; falls back to opening a page when focusing fails. */
async function openCall(callId, clients, scopeUrl) {
  const windows = await clients.matchAll({ type: "window", includeUncontrolled: true });
  const action = chooseClientAction(windows, callId, scopeUrl);
  if (action.type === "focus") {
    const client = windows.find((candidate) => candidate.id === action.clientId);
    try {
      const focused = await client.focus();
      if (action.message) {
        focused.postMessage(action.message);
      }
      return action;
    } catch (error) {
      console.warn("Ringboard could not focus its page, opening a new one:", error);
    }
  }
  await clients.openWindow(action.url);
  return { type: "open", url: action.url };
}

self.addEventListener("notificationclick", (event) => {
  const data = event.notification.data ?? {};
  event.notification.close();
  event.waitUntil(openCall(data.kind === "call" ? data.call_id : null, self.clients, self.registration.scope));
});

// Messages from the page ------------------------------------------------------------------

async function closeEndedCalls(activeCallIds) {
  const shown = await self.registration.getNotifications();
  for (const notification of endedCallNotifications(shown, activeCallIds)) {
    notification.close();
  }
}

self.addEventListener("message", (event) => {
  const message = event.data;
  if (message?.type === "active-calls" && Array.isArray(message.call_ids)) {
    event.waitUntil(closeEndedCalls(message.call_ids));
  }
});

// Subscription renewal ----------------------------------------------------------------------

/**
 * Send a renewed push subscription to the agent. Firefox fires pushsubscriptionchange
 * when its push service replaced a subscription; the device's cookie authenticates
 * the request, as it does for the page.
 */
async function renewSubscription(event) {
  let subscription = event.newSubscription ?? null;
  if (!subscription) {
    const response = await fetch("/api/push/key", { cache: "no-store" });
    const { public_key: applicationServerKey } = await response.json();
    subscription = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey });
  }
  await fetch("/api/push/subscriptions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(subscription.toJSON()),
  });
}

self.addEventListener("pushsubscriptionchange", (event) => {
  // NOTE: not covered by the tests: headless Chromium can neither subscribe nor fire this event.
  event.waitUntil(renewSubscription(event));
});

// Offline shell -----------------------------------------------------------------------------

/** Return "network-first", "cache-first" or "none" (the browser fetches as without a worker). */
function cacheStrategy(method, url, origin) {
  if (method !== "GET") {
    return "none";
  }
  const parsed = new URL(url);
  if (parsed.origin !== origin) {
    return "none";
  }
  if (NEVER_CACHED_PREFIXES.some((prefix) => parsed.pathname.startsWith(prefix))) {
    return "none";
  }
  if (parsed.pathname.startsWith(VENDOR_PREFIX)) {
    return "cache-first";
  }
  if (SHELL_PATHS.includes(parsed.pathname)) {
    return "network-first";
  }
  return "none";
}

/** Return the cached Pyodide URLs that belong to another version than `url`. */
function outdatedVendorUrls(cachedUrls, url) {
  const path = new URL(url).pathname;
  if (!path.startsWith(PYODIDE_PREFIX)) {
    return [];
  }
  const version = path.slice(PYODIDE_PREFIX.length).split("/")[0];
  return cachedUrls.filter((cached) => {
    const cachedPath = new URL(cached).pathname;
    return cachedPath.startsWith(PYODIDE_PREFIX) && cachedPath.slice(PYODIDE_PREFIX.length).split("/")[0] !== version;
  });
}

function shellKey(url) {
  const parsed = new URL(url);
  return parsed.origin + parsed.pathname;
}

function offlineResponse(language) {
  const texts = textsFor(language);
  const html =
    `<!doctype html><html lang="${language}"><meta charset="utf-8"><title>Ringboard</title>` +
    `<h1>${texts["offline.title"]}</h1><p>${texts["offline.body"]}</p></html>`;
  return new Response(html, { status: 503, headers: { "Content-Type": "text/html; charset=utf-8" } });
}

async function networkFirst(request) {
  const cache = await caches.open(SHELL_CACHE);
  const key = shellKey(request.url);
  try {
    const response = await fetch(request);
    if (response.ok && !response.redirected) {
      await cache.put(key, response.clone());
      return response;
    }
    // A proxy answers 502-504 while the agent is down; the cached shell is better.
    if (response.status >= 500) {
      return (await cache.match(key)) ?? response;
    }
    return response;
  } catch (error) {
    const cached = await cache.match(key);
    if (cached) {
      return cached;
    }
    if (request.mode === "navigate") {
      return offlineResponse(chooseLanguage(self.navigator.languages));
    }
    throw error;
  }
}

async function cacheFirst(request) {
  const cache = await caches.open(VENDOR_CACHE);
  const cached = await cache.match(request.url);
  if (cached) {
    return cached;
  }
  const response = await fetch(request);
  if (response.ok && response.type === "basic") {
    await cache.put(request.url, response.clone());
    const keys = (await cache.keys()).map((key) => key.url);
    await Promise.all(outdatedVendorUrls(keys, request.url).map((url) => cache.delete(url)));
  }
  return response;
}

self.addEventListener("fetch", (event) => {
  const strategy = cacheStrategy(event.request.method, event.request.url, self.location.origin);
  if (strategy === "network-first") {
    event.respondWith(networkFirst(event.request));
  } else if (strategy === "cache-first") {
    event.respondWith(cacheFirst(event.request));
  }
});

// Life cycle --------------------------------------------------------------------------------

async function precacheShell() {
  const cache = await caches.open(SHELL_CACHE);
  await Promise.all(
    SHELL_PATHS.map(async (path) => {
      try {
        const response = await fetch(path, { cache: "no-cache" });
        if (response.ok && !response.redirected) {
          await cache.put(shellKey(new URL(path, self.location.origin).href), response);
        }
      } catch (error) {
        // The network-first fetches fill the cache later; installing must not fail.
        console.warn(`Ringboard could not cache ${path}:`, error);
      }
    }),
  );
}

async function activate() {
  const names = await caches.keys();
  await Promise.all(names.filter((name) => !KNOWN_CACHES.includes(name)).map((name) => caches.delete(name)));
  await self.clients.claim();
  const shown = await self.registration.getNotifications();
  for (const notification of staleNotifications(shown, Date.now())) {
    notification.close();
  }
}

self.addEventListener("install", (event) => {
  // A new version replaces the old one at once; caches are versioned by name.
  self.skipWaiting();
  event.waitUntil(precacheShell());
});

self.addEventListener("activate", (event) => {
  event.waitUntil(activate());
});
