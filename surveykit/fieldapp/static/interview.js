// The interview screen: details and consent first, then the outline of sections in any order.
// Every keystroke is saved to IndexedDB at once; relevance is re-evaluated as answers change.

import * as store from "./store.js";
import * as instruments from "./instruments.js";
import { t } from "./i18n.js";
import { h, replace, nextId } from "./ui.js";
import {
  CONSENT_HOW, LETTERS, adoptLocalProbes, completionProblems, homeValue, localTimestamp, nobodyConsents, refusedConsent, speakers,
  interviewLabel, newParticipant, participantId, questions, referencedQuestions, relevantAnswers, setHome,
} from "./record.js";

const text = instruments.text;
window.fieldappSaveTimes = window.fieldappSaveTimes || [];

export async function showInterview(ctx, uuid, part, hooks) {
  const view = document.getElementById("view");
  const interview = await store.get("interviews", uuid);
  if (!interview || interview.device_id !== ctx.deviceId) { location.hash = "#/"; return; }
  if (adoptLocalProbes(interview)) await store.put(["interviews", interview]);
  const ref = interview.record.instrument;
  const definition = await instruments.loadDefinition(ref, interview.record.language);
  if (!definition) {
    replace(view, h("section", { class: "card" }, h("p", { class: "msg error", role: "alert" },
      t("instrument_gone", { ref: `${ref.slug} v${ref.version}` })), h("a", { class: "btn", href: "#/" }, t("back"))));
    return;
  }
  const screen = new InterviewScreen(ctx, interview, definition, hooks);
  screen.render(part || "metadata");
}

class InterviewScreen {
  constructor(ctx, interview, definition, hooks) {
    this.ctx = ctx;
    this.it = interview;
    this.def = definition;
    this.hooks = hooks;
    this.rules = questions(definition);
    this.referenced = referencedQuestions(definition);
    this.saving = Promise.resolve();
    this.writing = false;
    this.waiting = [];
  }

  get record() { return this.it.record; }

  // Saved as typed. The keystroke's handler starts the write itself (IndexedDB copies the record
  // as it is at that moment); while one write is in flight, later changes wait for it and go
  // together in the next one, so at most the changes of one write's duration are ever unsaved.
  // The time from each change to the write holding it is kept for the benchmark.
  save(started = performance.now()) {
    this.it.edits = (this.it.edits || 0) + 1;
    this.it.dirty = true;
    this.it.updated_at = new Date().toISOString();
    this.waiting.push(started);
    if (!this.writing) this.saving = this.writeLoop();
    return this.saving;
  }

  async writeLoop() {
    this.writing = true;
    try {
      while (this.waiting.length) {
        const starts = this.waiting;
        this.waiting = [];
        try {
          await store.put(["interviews", this.it]);
        } catch (err) {
          this.hooks.say(store.isQuotaError(err) ? t("storage_full") : String(err), "error");
          this.savedShown = false;
          const el = document.getElementById("saved");
          if (el) el.textContent = "";
          return;
        }
        const now = performance.now();
        const times = window.fieldappSaveTimes;
        for (const s of starts) times.push(now - s);
        if (times.length > 1000) times.splice(0, times.length - 1000);
        if (!this.savedShown) {
          this.savedShown = true;
          const el = document.getElementById("saved");
          if (el) el.textContent = t("saved");
        }
      }
    } finally {
      this.writing = false;
    }
  }

  // Relevance rules read only some questions; a change to any other cannot show or hide anything.
  changed(questionId) {
    if (questionId === undefined || this.referenced.has(questionId)) this.refreshVisibility();
  }

  render(part) {
    this.part = part;
    this.savedShown = false;
    const view = document.getElementById("view");
    const pid = interviewLabel(this.record);
    replace(view,
      h("div", { id: "message" }),
      h("div", { class: "interview-head" },
        h("a", { class: "btn quiet", href: "#/" }, t("back")),
        h("h2", { id: "interview-title" }, pid, " · ", text(this.def.title)),
        h("span", { id: "saved", class: "small", "aria-live": "polite" })),
      this.serverNotices(),
      h("div", { class: "interview" },
        h("nav", { class: "outline", "aria-label": t("outline") }, this.outline()),
        h("div", { class: "panel", id: "panel" }, part === "metadata" ? this.metadataPanel() : this.sectionPanel(part))),
      this.completionBox());
    this.refreshVisibility();
    if (this.ctx.message) this.hooks.say(this.ctx.message.text, this.ctx.message.kind);
  }

  serverNotices() {
    const out = [];
    if (this.it.rejected) {
      out.push(h("section", { class: "card alert", id: "rejected", role: "alert" },
        h("p", {}, t("server_said")),
        h("ul", {}, this.it.rejected.errors.map((e) => {
          const path = String(e.path || "").replace(/^changes\[\d+\]\.record\.?/, "");
          return h("li", {}, h("code", { class: "error-path" }, path), ": ", e.message);
        })),
        h("p", { class: "small" }, this.it.rejected.message)));
    }
    if (this.it.conflict && !this.it.conflict.seen) {
      out.push(h("section", { class: "card alert", id: "conflict", role: "alert" },
        h("h3", {}, t("conflict_title")),
        h("p", {}, t("conflict_help", { id: this.it.conflict.conflict_id, status: this.it.conflict.status })),
        h("button", { class: "btn", type: "button", onclick: async () => {
          await store.update("interviews", this.it.uuid, (it) => ({ ...it, conflict: { ...it.conflict, seen: true } }));
          this.it.conflict.seen = true;
          this.render(this.part);
        } }, t("conflict_ok"))));
    }
    for (const fc of this.it.field_conflicts || []) {
      out.push(h("p", { class: "msg warn" }, t("field_conflicts", { field: fc.field, pid: fc.pid })));
    }
    return out;
  }

  outline() {
    const item = (id, label, depth) => h("li", {},
      h("a", { href: `#/i/${this.it.uuid}/${id}`, class: `depth-${depth}`, "aria-current": this.part === id ? "page" : null }, label));
    const walk = (sections, depth) => sections.flatMap((s) => [item(s.id, text(s.title), depth), walk(s.sections || [], depth + 1)]);
    return h("ol", {}, item("metadata", t("metadata"), 0), walk(this.def.sections, 0));
  }

  // --- details, participants and consent ---

  metadataPanel() {
    const r = this.record;
    const people = r.participants.map((p, index) => this.participantBlock(p, index));
    const next = LETTERS[r.participants.length];
    const metaQuestions = (this.def.metadata || []).filter((q) => !(q.binds || "").startsWith("participant."));
    const startedId = nextId("started");
    return h("div", {},
      h("h3", {}, t("metadata")),
      h("fieldset", { class: "group" }, h("legend", {}, t("participants")), people,
        next ? h("button", { class: "btn", type: "button", id: "add-participant", onclick: () => {
          r.participants.push(newParticipant(next));
          this.save();
          this.render("metadata");
        } }, t("add_participant", { letter: next })) : null),
      nobodyConsents(r) ? h("p", { class: "msg warn", id: "consent-stop", role: "alert" }, t("consent_stop")) : null,
      metaQuestions.map((q) => this.question(q)),
      h("div", { class: "field" }, h("label", { for: startedId }, t("started_at")),
        h("input", { id: startedId, name: "started_at", value: r.started_at, oninput: (e) => {
          const s = performance.now();
          r.started_at = e.target.value;
          this.save(s);
          this.changed();
        } })),
      h("div", { class: "field" }, h("label", { for: "record-notes" }, t("notes_record")),
        h("textarea", { id: "record-notes", rows: 3, oninput: (e) => { const s = performance.now(); r.notes = e.target.value; this.save(s); } }, r.notes || "")));
  }

  participantBlock(p, index) {
    const id = (name) => `p${p.letter}-${name}`;
    const set = (name, value, rerender = false) => {
      const s = performance.now();
      p[name] = value;
      if (name === "consent_given" && value === true && !p.consent_date) p.consent_date = localTimestamp().slice(0, 10);
      this.save(s);
      if (rerender) this.render("metadata");
      else this.changed();
    };
    const consent = h("fieldset", { class: "choice" }, h("legend", {}, t("consent_given")),
      [[true, t("yes")], [false, t("no")], [null, t("not_asked")]].map(([v, label]) => h("label", { class: "option" },
        h("input", { type: "radio", name: id("consent"), checked: p.consent_given === v, onchange: () => set("consent_given", v, true) }), label)));
    const last = index === this.record.participants.length - 1 && index > 0;
    return h("div", { class: "participant", dataset: { letter: p.letter } },
      h("h4", {}, t("participant", { letter: p.letter }), " ", h("code", {}, participantId(this.record, p.letter))),
      h("div", { class: "field" }, h("label", { for: id("agency") }, t("agency")),
        h("input", { id: id("agency"), value: p.agency || "", maxlength: 500, oninput: (e) => set("agency", e.target.value) })),
      h("div", { class: "field" }, h("label", { for: id("position") }, t("position")),
        h("input", { id: id("position"), value: p.position || "", maxlength: 300, oninput: (e) => set("position", e.target.value || null) })),
      consent,
      p.consent_given === false && !nobodyConsents(this.record)
        ? h("p", { class: "msg warn", id: id("refused") }, t("consent_refused_one", { letter: p.letter })) : null,
      p.consent_given === true ? [
        h("div", { class: "field" }, h("label", { for: id("consent-date") }, t("consent_date")),
          h("input", { id: id("consent-date"), type: "date", value: p.consent_date || "", oninput: (e) => set("consent_date", e.target.value || null) })),
        h("div", { class: "field" }, h("label", { for: id("consent-how") }, t("consent_how")),
          h("select", { id: id("consent-how"), onchange: (e) => set("consent_recorded_how", e.target.value || null) },
            h("option", { value: "" }, "—"),
            CONSENT_HOW.map((code) => h("option", { value: code, selected: p.consent_recorded_how === code }, this.consentLabel(code))))),
      ] : null,
      last ? h("button", { class: "btn quiet", type: "button", onclick: () => {
        this.record.participants.pop();
        this.record.quotes = (this.record.quotes || []).filter((q) => q.participant !== p.letter);
        this.save();
        this.render("metadata");
      } }, t("remove_participant", { letter: p.letter })) : null);
  }

  consentLabel(code) {
    const q = this.rules.find((r) => r.binds === "participant.consent_recorded_how");
    const choice = q && (q.choices || []).find((c) => c.value === code);
    return choice ? text(choice.label) : code;
  }

  // --- sections ---

  sectionPanel(sectionId) {
    const find = (sections) => {
      for (const s of sections) {
        if (s.id === sectionId) return s;
        const inner = find(s.sections || []);
        if (inner) return inner;
      }
      return null;
    };
    const section = find(this.def.sections);
    if (!section) return h("p", {}, t("section_empty"));
    if (nobodyConsents(this.record)) return h("p", { class: "msg warn", role: "alert" }, t("consent_stop"));
    const body = (s, level) => [
      h(level === 3 ? "h3" : "h4", {}, this.translated(s.title)),
      s.intro ? h("p", { class: "intro" }, this.translated(s.intro)) : null,
      (s.questions || []).map((q) => this.question(q)),
      (s.sections || []).map((sub) => h("section", { class: "subsection" }, body(sub, 4))),
    ];
    return h("div", {}, body(section, 3));
  }

  translated(value) {
    if (!instruments.isFallback(value)) return text(value);
    return h("span", { class: "fallback", lang: value.lang }, text(value),
      h("span", { class: "fallback-mark" }, ` (${t("fallback", { lang: value.lang })})`));
  }

  getAnswer(q) {
    return q.binds ? homeValue(this.record, q.binds) : this.record.answers[q.id];
  }

  setAnswer(q, value, started) {
    if (q.binds) setHome(this.record, q.binds, value);
    else if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) delete this.record.answers[q.id];
    else this.record.answers[q.id] = value;
    this.save(started);
    this.changed(q.id);
  }

  question(q) {
    const id = `q-${q.id}`;
    const value = this.getAnswer(q);
    const on = (read) => (e) => { const s = performance.now(); this.setAnswer(q, read(e), s); };
    let control;
    if (q.type === "long_text") {
      control = [h("textarea", { id, name: q.id, rows: 6, oninput: on((e) => e.target.value) }, value ?? ""), this.quoteTools(q)];
    } else if (q.type === "short_text") {
      control = h("input", { id, name: q.id, value: value ?? "", oninput: on((e) => e.target.value) });
    } else if (q.type === "number") {
      control = h("input", { id, name: q.id, type: "number", inputmode: "decimal", step: "any", min: q.min, max: q.max, value: value ?? "",
        oninput: on((e) => (e.target.value === "" || Number.isNaN(e.target.valueAsNumber) ? null : e.target.valueAsNumber)) });
    } else if (q.type === "date") {
      control = h("input", { id, name: q.id, type: "date", value: value ?? "", oninput: on((e) => e.target.value || null) });
    } else if (q.type === "yes_no") {
      control = h("div", { class: "options", role: "radiogroup", "aria-labelledby": `${id}-label` },
        [[true, t("yes")], [false, t("no")]].map(([v, label]) => h("label", { class: "option" },
          h("input", { type: "radio", name: q.id, checked: value === v, onchange: on(() => v) }), label)),
        h("button", { type: "button", class: "btn quiet", onclick: (e) => {
          e.target.parentElement.querySelectorAll("input").forEach((i) => { i.checked = false; });
          this.setAnswer(q, null);
        } }, t("yes_no_clear")));
    } else if (q.type === "single_choice") {
      control = h("div", { class: "options", role: "radiogroup", "aria-labelledby": `${id}-label` },
        (q.choices || []).map((c) => h("label", { class: "option" },
          h("input", { type: "radio", name: q.id, value: c.value, checked: value === c.value, onchange: on(() => c.value) }), this.translated(c.label))));
    } else if (q.type === "multiple_choice") {
      const chosen = new Set(Array.isArray(value) ? value : []);
      control = h("div", { class: "options", role: "group", "aria-labelledby": `${id}-label` },
        (q.choices || []).map((c) => h("label", { class: "option" },
          h("input", { type: "checkbox", name: q.id, value: c.value, checked: chosen.has(c.value), onchange: on((e) => {
            const box = e.target.closest(".options");
            return [...box.querySelectorAll("input:checked")].map((i) => i.value);
          }) }), this.translated(c.label))));
    }
    const probes = (q.probes || []).length ? h("details", { class: "probes" },
      h("summary", {}, t("probes")),
      h("ul", {}, q.probes.map((probe, k) => h("li", {}, h("label", { class: "option" },
        h("input", { type: "checkbox", name: `probe-${q.id}`, value: String(k), checked: (this.record.probes_used?.[q.id] || []).includes(k), onchange: (e) => {
          const used = { ...(this.record.probes_used || {}) };
          const ticked = new Set(used[q.id] || []);
          if (e.target.checked) ticked.add(k); else ticked.delete(k);
          if (ticked.size) used[q.id] = [...ticked].sort((a, b) => a - b); else delete used[q.id];
          this.record.probes_used = used;
          this.save();
        } }), this.translated(probe)))))) : null;
    const labelTag = ["yes_no", "single_choice", "multiple_choice"].includes(q.type) ? "p" : "label";
    return h("div", { class: "question", dataset: { qid: q.id }, id: `block-${q.id}` },
      h(labelTag, { class: "prompt", id: `${id}-label`, for: labelTag === "label" ? id : null },
        this.translated(q.prompt), q.required ? h("span", { class: "required", "aria-hidden": "true" }, " *") : null),
      q.notes ? h("p", { class: "guidance" }, h("strong", {}, t("guidance"), ": "), this.translated(q.notes)) : null,
      control, probes,
      h("p", { class: "not-asked small", hidden: true }, t("not_asked_q")));
  }

  quoteTools(q) {
    const list = h("ul", { class: "quotes", id: `quotes-${q.id}` });
    const draw = () => replace(list, (this.record.quotes || []).filter((x) => x.question_id === q.id).map((quote) => this.quoteItem(quote, draw)));
    draw();
    return h("div", { class: "quote-tools" },
      h("button", { type: "button", class: "btn", dataset: { quote: q.id }, onclick: () => {
        const area = document.getElementById(`q-${q.id}`);
        const { selectionStart: a, selectionEnd: b, value } = area;
        if (a === b) { this.hooks.say(t("select_first"), "error"); return; }
        const [speaker] = speakers(this.record);
        if (!speaker) { this.hooks.say(t("consent_stop"), "error"); return; }
        // Offsets count code points, as the server does (docs/sync.md, Quotes).
        const start = Array.from(value.slice(0, a)).length;
        const quoted = value.slice(a, b);
        const quote = { id: crypto.randomUUID(), question_id: q.id, text: quoted, start, end: start + Array.from(quoted).length, tags: [], participant: speaker };
        this.record.quotes = [...(this.record.quotes || []), quote];
        this.save();
        draw();
      } }, t("mark_quote")),
      h("h5", {}, t("quotes")), list);
  }

  quoteItem(quote, redraw) {
    const tagsId = `tags-${quote.id}`;
    const byId = `by-${quote.id}`;
    return h("li", { class: "quote", dataset: { quote: quote.id } },
      h("blockquote", {}, quote.text),
      h("div", { class: "field inline" }, h("label", { for: tagsId }, t("quote_tags")),
        h("input", { id: tagsId, value: (quote.tags || []).join(", "), oninput: (e) => {
          quote.tags = e.target.value.split(",").map((x) => x.trim()).filter(Boolean).map((x) => x.slice(0, 100));
          this.save();
        } })),
      h("div", { class: "field inline" }, h("label", { for: byId }, t("quote_by")),
        h("select", { id: byId, onchange: (e) => { quote.participant = e.target.value; this.save(); redraw(); } },
          this.record.participants.filter((p) => p.consent_given !== false || p.letter === (quote.participant || "A"))
            .map((p) => h("option", { value: p.letter, selected: (quote.participant || "A") === p.letter }, p.letter)))),
      refusedConsent(this.record, quote.participant || "A")
        ? h("p", { class: "msg warn small" }, t("quote_not_kept", { letter: quote.participant || "A" })) : null,
      h("button", { type: "button", class: "btn quiet", onclick: () => {
        this.record.quotes = this.record.quotes.filter((x) => x.id !== quote.id);
        this.save();
        redraw();
      } }, t("remove")));
  }

  refreshVisibility() {
    const { asked } = relevantAnswers(this.record, this.def);
    document.querySelectorAll(".question[data-qid]").forEach((el) => {
      const shown = asked.has(el.dataset.qid);
      if (el.dataset.shown === String(shown)) return; // unchanged: leave the DOM alone
      el.dataset.shown = String(shown);
      el.classList.toggle("hidden-q", !shown);
      el.querySelectorAll("input, textarea, select, button").forEach((c) => { c.disabled = !shown; });
      const note = el.querySelector(".not-asked");
      if (note) note.hidden = shown;
    });
  }

  // --- completion ---

  completionBox() {
    const r = this.record;
    const box = h("div", { id: "missing", "aria-live": "polite" });
    const complete = r.status === "complete";
    return h("section", { class: "card completion" },
      h("div", { class: "actions" },
        h("button", { id: "mark-complete", class: complete ? "btn" : "btn primary", type: "button", onclick: () => {
          if (complete) {
            r.status = "draft";
            delete r.ended_at;
            this.save();
            this.render(this.part);
            return;
          }
          const problems = completionProblems(this.it, this.def);
          if (problems.length) {
            replace(box, h("p", { class: "msg error", role: "alert" }, t("missing_title")),
              h("ul", { class: "missing" }, problems.map((p) => h("li", {}, this.describeProblem(p)))));
            return;
          }
          r.status = "complete";
          r.ended_at = localTimestamp();
          if (r.ended_at < r.started_at) r.ended_at = r.started_at;
          this.save();
          this.hooks.say(t("completed"));
          this.render(this.part);
        } }, complete ? t("reopen") : t("mark_complete")),
        h("button", { class: "btn", type: "button", onclick: () => this.hooks.runSync(true) }, t("sync_now"))),
      box);
  }

  describeProblem(p) {
    if (p.what === "agency") return h("a", { href: `#/i/${this.it.uuid}/metadata` }, t("missing_agency", { letter: p.letter }));
    if (p.what === "consent") return h("a", { href: `#/i/${this.it.uuid}/metadata` }, t("missing_consent", { letter: p.letter }));
    if (p.what === "mode") return h("a", { href: `#/i/${this.it.uuid}/metadata` }, t("missing_mode"));
    const rule = this.rules.find((q) => q.id === p.question);
    const where = rule && rule.section ? rule.section : "metadata";
    return h("a", { href: `#/i/${this.it.uuid}/${where}` }, t("missing_required", { label: rule ? text(rule.prompt) : p.question }));
  }
}

