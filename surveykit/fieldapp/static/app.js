// The field app: start-up, the enrolment and home screens, sync, and routing between screens.

import * as api from "./api.js";
import * as store from "./store.js";
import * as sync from "./sync.js";
import * as instruments from "./instruments.js";
import { LANGUAGES, language, setLanguage, t } from "./i18n.js";
import { h, replace, download } from "./ui.js";
import { interviewLabel, localTimestamp, newParticipant, notReady } from "./record.js";
import { showInterview } from "./interview.js";

const view = document.getElementById("view");
const banner = document.getElementById("banner");
const ctx = { deviceId: null, session: null, syncing: false, retryDelay: 0, retryTimer: null, message: null };
window.fieldapp = ctx; // for the benchmark and tests: read-only use

function say(text, kind = "info") {
  ctx.message = text ? { text, kind } : null;
  const box = document.getElementById("message");
  if (box) replace(box, text ? h("p", { class: `msg ${kind}`, role: kind === "error" ? "alert" : "status" }, text) : []);
}

function fatal(text) {
  replace(view, h("section", { class: "card" }, h("p", { class: "msg error", role: "alert" }, text)));
}

// --- start ----------------------------------------------------------------------------------

async function start() {
  setLanguage((navigator.language || "en").slice(0, 2));
  renderLanguageSwitch();
  try {
    await store.open();
  } catch (err) {
    fatal(t("no_indexeddb"));
    return;
  }
  setLanguage(await store.getValue("lang", language()));
  renderLanguageSwitch();
  await api.settleInterruptedRefreshes();
  registerServiceWorker();
  window.addEventListener("online", () => { updateNetwork(); runSync(); });
  window.addEventListener("offline", updateNetwork);
  window.addEventListener("hashchange", route);
  ctx.deviceId = await store.getValue("active_device");
  // Asked again at each start: a browser may grant it later (an installed app, a used site).
  if (ctx.deviceId) await askPersistence().catch(() => {});
  await route();
  if (ctx.session && navigator.onLine) runSync();
}

async function askPersistence() {
  let answer = "unknown";
  if (navigator.storage && navigator.storage.persist) {
    answer = (await navigator.storage.persisted()) || (await navigator.storage.persist()) ? "granted" : "denied";
  }
  await store.setValue("persist", answer);
  return answer;
}

function renderLanguageSwitch() {
  const box = document.getElementById("lang");
  replace(box, Object.entries(LANGUAGES).map(([code, name]) => h("button", {
    type: "button", class: code === language() ? "chip active" : "chip", "aria-pressed": String(code === language()),
    lang: code,
    onclick: async () => { setLanguage(code); await store.setValue("lang", code); renderLanguageSwitch(); route(); },
  }, name)));
  document.title = t("app_title");
  document.getElementById("title").textContent = t("app_title");
}

function updateNetwork() {
  const el = document.getElementById("network");
  el.textContent = navigator.onLine ? t("online") : t("offline");
  el.className = navigator.onLine ? "chip ok" : "chip warn";
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).then((registration) => {
    const offer = () => {
      if (!registration.waiting || !navigator.serviceWorker.controller) return;
      replace(banner, h("div", { class: "update", role: "status" }, t("update_ready"), " ",
        h("button", { type: "button", class: "btn", onclick: () => registration.waiting?.postMessage({ type: "skip-waiting" }) }, t("update_apply"))));
    };
    offer();
    registration.addEventListener("updatefound", () => {
      registration.installing?.addEventListener("statechange", offer);
    });
  }).catch(() => {});
  // The first worker taking control is no update; a later one is the release the researcher chose.
  let reloading = !navigator.serviceWorker.controller;
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    if (reloading) { reloading = false; return; }
    reloading = true;
    location.reload();
  });
}

async function route() {
  updateNetwork();
  ctx.session = ctx.deviceId ? await store.get("sessions", ctx.deviceId) : null;
  if (ctx.session && ctx.session.signed_out) ctx.session = null;
  const hash = location.hash.replace(/^#\/?/, "");
  if (!ctx.session || hash === "enrol") return showEnrol();
  const [screen, arg, part] = hash.split("/");
  if (screen === "i" && arg) return showInterview(ctx, arg, part, { say, runSync });
  if (screen === "new") return showNew();
  return showHome();
}

// --- enrolment ------------------------------------------------------------------------------

async function showEnrol() {
  const others = (await store.all("sessions")).filter((s) => s.device_id !== ctx.deviceId || s.signed_out);
  let otherUnsent = 0;
  for (const s of others) {
    const list = await sync.interviewsOf(s.device_id);
    if (list.some((i) => sync.unsentState(i) !== "sent")) otherUnsent += 1;
  }
  const input = h("input", { id: "enrol-code", name: "code", autocomplete: "off", autocapitalize: "characters", spellcheck: "false", required: true });
  const error = h("p", { id: "enrol-error", class: "field-error", "aria-live": "polite" });
  const submit = async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const session = await api.activate(input.value.trim());
      ctx.deviceId = session.device_id;
      await askPersistence();
      location.hash = "#/";
      await route();
      runSync();
    } catch (err) {
      error.textContent = err instanceof api.Offline ? t("enrol_offline")
        : err instanceof api.ApiError && err.status === 401 ? t("enrol_refused") : err.message;
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", "enrol-error");
    }
  };
  const scan = ("BarcodeDetector" in window) ? qrScanner((code) => { input.value = code; }) : null;
  replace(view, h("section", { class: "card narrow" },
    h("h2", {}, t("enrol_title")),
    h("p", {}, t("enrol_help")),
    h("form", { onsubmit: submit, novalidate: true },
      h("label", { for: "enrol-code" }, t("enrol_code")), input, error,
      h("div", { class: "actions" }, h("button", { class: "btn primary", type: "submit" }, t("enrol_button")), scan)),
    otherUnsent ? h("p", { class: "msg info" }, t("other_sessions", { n: otherUnsent })) : null));
  input.focus();
}

// Reads surveykit://enrol?server=...&code=... with the browser's BarcodeDetector, where it exists.
function qrScanner(onCode) {
  const video = h("video", { class: "scanner", muted: true, playsinline: true, hidden: true });
  let stream = null;
  const button = h("button", { class: "btn", type: "button" }, t("enrol_scan"));
  const stop = () => { stream?.getTracks().forEach((tr) => tr.stop()); stream = null; video.hidden = true; button.textContent = t("enrol_scan"); };
  button.addEventListener("click", async () => {
    if (stream) return stop();
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    button.textContent = t("enrol_scan_stop");
    const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    const tick = async () => {
      if (!stream) return;
      const found = await detector.detect(video).catch(() => []);
      const raw = found[0]?.rawValue;
      if (raw) {
        try { onCode(new URL(raw).searchParams.get("code") || raw); } catch { onCode(raw); }
        stop();
        return;
      }
      requestAnimationFrame(tick);
    };
    tick();
  });
  return h("span", {}, button, video);
}

// --- home -----------------------------------------------------------------------------------

export async function statusCounts(deviceId) {
  const list = await sync.interviewsOf(deviceId);
  const counts = { drafts: 0, complete_unsent: 0, sent: 0 };
  for (const it of list) {
    const state = sync.unsentState(it);
    if (state === "sent") counts.sent += 1;
    else if (it.record.status === "complete") counts.complete_unsent += 1;
    else counts.drafts += 1;
  }
  let left = 0;
  for (const block of await store.all("blocks", "device_id", deviceId)) left += sync.unusedNumbers(block).length;
  return { list, counts, left };
}

function syncText(it) {
  const state = sync.unsentState(it);
  if (state === "sent") {
    const last = (it.receipts || []).filter((r) => r.revision).at(-1) || {};
    return t("sync_sent", { revision: last.revision, hash: String(last.content_hash || "").slice(0, 12) });
  }
  if (state === "conflict") return t("sync_conflict", { id: it.conflict.conflict_id });
  if (state === "rejected") return t("sync_rejected", { message: it.rejected.message });
  const missing = notReady(it.record);
  if (missing.length) return t("not_ready", { what: missing.map((m) => m.what).join(", ") });
  return t("sync_unsent");
}

async function showHome() {
  const session = ctx.session;
  const { list, counts, left } = await statusCounts(ctx.deviceId);
  const persist = await store.getValue("persist", "unknown");
  const ended = session.refresh_state !== "ok";
  const rows = list.sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || "")).map((it) => {
    const state = sync.unsentState(it);
    return h("li", { class: `row state-${state}`, dataset: { uuid: it.uuid } },
      h("a", { href: `#/i/${it.uuid}`, class: "row-link" },
        h("strong", { class: "pid" }, interviewLabel(it.record)),
        h("span", { class: "badge" }, t(`state_${it.record.status}`)),
        h("span", { class: "sync-state" }, syncText(it))));
  });
  const catalogue = await instruments.catalogue(ctx.deviceId);
  replace(view,
    h("div", { id: "message" }),
    ended ? h("section", { class: "card alert", role: "alert" },
      h("p", {}, session.ended_reason === "revoked" ? t("session_revoked") : t("session_ended", { device: session.device_id })),
      h("div", { class: "actions" },
        h("button", { class: "btn primary", type: "button", onclick: backup }, t("backup")),
        session.ended_reason === "revoked" ? null : h("a", { class: "btn", href: "#/enrol" }, t("reenrol")))) : null,
    h("section", { class: "card", "aria-labelledby": "status-title" },
      h("h2", { id: "status-title" }, t("status")),
      h("dl", { class: "glance" },
        h("div", {}, h("dt", {}, t("drafts")), h("dd", { id: "count-drafts" }, counts.drafts)),
        h("div", {}, h("dt", {}, t("complete_unsent")), h("dd", { id: "count-unsent" }, counts.complete_unsent)),
        h("div", {}, h("dt", {}, t("sent")), h("dd", { id: "count-sent" }, counts.sent)),
        h("div", {}, h("dt", {}, t("last_sync")), h("dd", { id: "last-sync" }, session.last_sync ? new Date(session.last_sync).toLocaleString() : t("never"))),
        h("div", {}, h("dt", {}, t("ids_left")), h("dd", { id: "ids-left" }, left))),
      h("p", { id: "persist", class: "small" }, t(`persist_${persist}`)),
      h("p", { class: "small" }, t("signed_in_as", { user: session.username }), " · ", t("device"), " ", h("code", {}, session.device_id)),
      h("div", { class: "actions" },
        h("button", { id: "sync-button", class: "btn primary", type: "button", disabled: ended, onclick: () => runSync(true) }, t("sync_now")),
        h("button", { id: "backup-button", class: "btn", type: "button", onclick: backup }, t("backup")),
        h("button", { class: "btn", type: "button", disabled: ended, onclick: downloadInstruments }, t("update_instruments")),
        h("button", { class: "btn quiet", type: "button", onclick: signOut }, t("sign_out")))),
    h("section", { class: "card", "aria-labelledby": "list-title" },
      h("div", { class: "card-head" }, h("h2", { id: "list-title" }, t("interviews")),
        h("a", { class: "btn primary", href: "#/new", id: "new-interview" }, t("new_interview"))),
      catalogue.length ? null : h("p", { class: "msg info" }, t("instruments_none")),
      h("ul", { class: "list", id: "interview-list" }, rows)));
  if (ctx.message) say(ctx.message.text, ctx.message.kind);
}

async function downloadInstruments() {
  try {
    const outcome = await instruments.refresh(ctx.deviceId);
    say(t("instruments_done", outcome));
  } catch (err) {
    say(err.message, "error");
  }
  if (!location.hash.startsWith("#/i/")) await showHome();
}

async function signOut() {
  if (!window.confirm(t("sign_out_confirm"))) return;
  // The tokens go; the records stay, tied to this device session, until sent or exported.
  await store.update("sessions", ctx.deviceId, (s) => ({ ...s, signed_out: true, access_token: null }));
  await store.setValue("active_device", null);
  ctx.deviceId = null;
  location.hash = "#/enrol";
  await route();
}

async function backup() {
  const batch = await sync.backupBatch(ctx.deviceId);
  if (!batch.changes.length) { say(t("backup_none")); return; }
  const stamp = new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
  download(`surveykit-backup-${ctx.deviceId}-${stamp}.json`, JSON.stringify(batch, null, 1));
}

// --- sync -----------------------------------------------------------------------------------

export async function runSync(byHand = false) {
  if (ctx.syncing || !ctx.deviceId) return;
  if (!navigator.onLine) { if (byHand) say(t("sync_failed", { why: t("offline") }), "error"); return; }
  clearTimeout(ctx.retryTimer);
  ctx.syncing = true;
  say(t("syncing"));
  const button = document.getElementById("sync-button");
  if (button) button.disabled = true;
  try {
    const catalogue = await instruments.catalogue(ctx.deviceId);
    if (!catalogue.length) await instruments.refresh(ctx.deviceId);
    const counts = await sync.push(ctx.deviceId);
    const versions = await sync.pull(ctx.deviceId);
    for (const ref of versions) {
      const [slug, version] = ref.split("@");
      for (const lang of ["en", "pt"]) await instruments.fetchVersion(ctx.deviceId, slug, Number(version), lang).catch(() => {});
    }
    await sync.refreshBlocks(ctx.deviceId);
    await store.update("sessions", ctx.deviceId, (s) => ({ ...s, last_sync: new Date().toISOString() }));
    ctx.retryDelay = 0;
    say(t("sync_done", counts));
  } catch (err) {
    if (err instanceof api.SessionEnded) {
      say(null);
    } else {
      // Back off: 2 s, 4 s, 8 s... up to 5 minutes, with jitter; the same changes go again.
      ctx.retryDelay = Math.min(300_000, Math.max(2000, ctx.retryDelay * 2));
      const wait = Math.round(ctx.retryDelay / 2 + Math.random() * ctx.retryDelay / 2);
      ctx.retryTimer = setTimeout(() => runSync(), wait);
      say(`${t("sync_failed", { why: err.message })} ${t("sync_retry_in", { s: Math.round(wait / 1000) })}`, "error");
    }
  } finally {
    ctx.syncing = false;
    const hash = location.hash;
    if (!hash.startsWith("#/i/") && !hash.startsWith("#/new")) await route();
    else if (hash.startsWith("#/i/")) await route();
  }
}

// --- a new interview --------------------------------------------------------------------------

async function countriesOf(study) {
  const countries = new Set();
  for (const g of ctx.session.grants || []) {
    if (g.study === study && Array.isArray(g.countries)) g.countries.forEach((c) => countries.add(c));
  }
  for (const b of await store.all("blocks", "device_id", ctx.deviceId)) if (b.study === study) countries.add(b.country);
  return [...countries].sort();
}

async function showNew() {
  const catalogue = await instruments.catalogue(ctx.deviceId);
  const studies = [...new Set((ctx.session.grants || []).map((g) => g.study))];
  const field = (id, label, control) => h("div", { class: "field" }, h("label", { for: id }, label), control);
  const select = (id, options) => h("select", { id }, options.map(([v, label]) => h("option", { value: v }, label)));
  const instrumentSel = select("new-instrument", catalogue.map((i) => [i.slug, `${i.slug} v${i.current_version}`]));
  const langSel = h("select", { id: "new-language" });
  const studySel = select("new-study", studies.map((s) => [s, s]));
  const countrySel = h("select", { id: "new-country" });
  const planned = h("div", { id: "planned" });
  const blockInfo = h("div", { id: "block-info" });
  const current = () => catalogue.find((i) => i.slug === instrumentSel.value);
  const refreshLanguages = () => {
    const item = current();
    replace(langSel, (item ? item.languages : []).map((l) => h("option", { value: l, selected: l === language() }, l)));
  };
  const refreshOptions = async () => {
    const item = current();
    if (!item) return;
    const study = studySel.value;
    const countries = await countriesOf(study);
    if (!countrySel.options.length || ![...countrySel.options].some((o) => o.value === countrySel.value)) {
      replace(countrySel, countries.map((c) => h("option", { value: c }, c)));
    }
    const country = countrySel.value;
    const where = `${study}/${country}/${item.activity}`;
    const local = await sync.interviewsOf(ctx.deviceId);
    const taken = new Set(local.filter((i) => i.record.study === study && i.record.country === country && i.record.activity === item.activity).map((i) => i.record.interview_number));
    const registry = (await store.all("registry", "device_id", ctx.deviceId))
      .filter((p) => p.study === study && p.country === country && p.activity === item.activity && p.status === "planned" && !taken.has(p.interview_number));
    const byNumber = new Map();
    for (const p of registry) byNumber.set(p.interview_number, [...(byNumber.get(p.interview_number) || []), p]);
    replace(planned, h("h3", {}, t("planned")), byNumber.size ? h("ul", { class: "list" }, [...byNumber].sort((a, b) => a[0] - b[0]).map(([number, people]) =>
      h("li", { class: "row" }, h("span", {}, people.map((p) => p.pid).join(", "), " · ", people[0].agency || ""),
        h("button", { type: "button", class: "btn", onclick: () => create(number, people) }, t("start"))))) : h("p", {}, t("no_planned")));
    const blocks = (await store.all("blocks", "device_id", ctx.deviceId)).filter((b) => b.study === study && b.country === country && b.activity === item.activity);
    const free = blocks.flatMap((b) => sync.unusedNumbers(b).filter((n) => !taken.has(n)));
    const reserve = h("button", { type: "button", class: "btn", id: "reserve-block", onclick: async () => {
      try {
        const block = await sync.reserveBlock(ctx.deviceId, study, country, item.activity);
        say(t("reserve_done", { first: block.first_number, last: block.last_number }));
      } catch (err) { say(err.message, "error"); }
      refreshOptions();
    } }, t("reserve_block"));
    replace(blockInfo, h("h3", {}, t("unplanned")),
      free.length === 0 ? h("p", { class: "msg warn" }, t("no_block", { where }))
        : free.length <= 2 ? h("p", { class: "msg warn", id: "low-block" }, t("low_block", { n: free.length, where })) : null,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "btn primary", id: "start-unplanned", disabled: !free.length, onclick: () => create(null, null) }, t("start")),
        reserve));
  };
  const create = async (number, people) => {
    const item = current();
    const definitionLang = langSel.value;
    const ref = { slug: item.slug, version: item.current_version };
    if (!(await instruments.loadDefinition(ref, definitionLang))) {
      say(t("instrument_gone", { ref: `${ref.slug} v${ref.version}` }), "error");
      return;
    }
    const study = studySel.value;
    const country = countrySel.value;
    const uuid = crypto.randomUUID();
    let block = null;
    if (number === null) {
      const local = await sync.interviewsOf(ctx.deviceId);
      const taken = new Set(local.map((i) => `${i.record.study}/${i.record.country}/${i.record.activity}/${i.record.interview_number}`));
      const blocks = (await store.all("blocks", "device_id", ctx.deviceId))
        .filter((b) => b.study === study && b.country === country && b.activity === item.activity)
        .sort((a, b) => a.first_number - b.first_number);
      for (const b of blocks) {
        const n = sync.unusedNumbers(b).find((x) => !taken.has(`${study}/${country}/${item.activity}/${x}`));
        if (n !== undefined) { number = n; block = { ...b, used: [...(b.used || []), n] }; break; }
      }
      if (number === null) return;
    }
    const participants = people && people.length
      ? people.sort((a, b) => a.letter.localeCompare(b.letter)).map((p) => ({
        letter: p.letter, agency: p.agency || "", position: p.position ?? null, consent_given: p.consent_given ?? null,
        consent_date: p.consent_date ?? null, consent_recorded_how: p.consent_recorded_how ?? null,
      }))
      : [newParticipant("A")];
    const interview = {
      uuid, device_id: ctx.deviceId, created_at: new Date().toISOString(), updated_at: new Date().toISOString(),
      base_revision: 0, pending: null, acked: null, rejected: null, conflict: null, receipts: [], edits: 0, dirty: true,
      local: {},
      record: {
        study, country, activity: item.activity, interview_number: number, participants,
        instrument: ref, language: definitionLang, mode: null, started_at: localTimestamp(), status: "draft",
        answers: {}, quotes: [], notes: "",
      },
    };
    // The number is marked used in the same transaction that stores the interview: never minted twice.
    const writes = [["interviews", interview]];
    if (block) writes.push(["blocks", block]);
    await store.put(...writes);
    location.hash = `#/i/${uuid}/metadata`;
  };
  instrumentSel.addEventListener("change", () => { refreshLanguages(); refreshOptions(); });
  studySel.addEventListener("change", () => { replace(countrySel); refreshOptions(); });
  countrySel.addEventListener("change", refreshOptions);
  replace(view, h("div", { id: "message" }), h("section", { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, t("new_interview")), h("a", { class: "btn quiet", href: "#/" }, t("back"))),
    catalogue.length ? [
      field("new-instrument", t("instrument"), instrumentSel),
      field("new-language", t("language"), langSel),
      field("new-study", t("study"), studySel),
      field("new-country", t("country"), countrySel),
      planned, blockInfo,
    ] : h("p", { class: "msg info" }, t("instruments_none"))));
  refreshLanguages();
  await refreshOptions();
}

start();
