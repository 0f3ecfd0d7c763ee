// The interview record as docs/sync.md defines it: built from what the researcher entered,
// pruned as the server prunes nothing (it refuses instead), and checked before completion the way
// surveykit/sync/validation.py checks it (required answers, relevance, participants, times).

import { parse } from "./relevance.js";

export const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
export const MODES = ["in_person", "virtual", "phone"];
export const CONSENT_HOW = ["written_form", "verbal_audio", "verbal_notes"];
const PARTICIPANT_FIELDS = ["agency", "position", "consent_given", "consent_date", "consent_recorded_how"];

export function participantId(record, letter) {
  const n = record.interview_number;
  return `${record.activity}-${record.country}-${String(n).padStart(n > 99 ? 3 : 2, "0")}-${letter}`;
}

// "RA1-KE-04 (A, B)": the interview's ID and its participants' letters.
export function interviewLabel(record) {
  const id = participantId(record, "A").slice(0, -2);
  return `${id} (${record.participants.map((p) => p.letter).join(", ")})`;
}

export function newParticipant(letter) {
  return { letter, agency: "", position: null, consent_given: null, consent_date: null, consent_recorded_how: null };
}

// RFC 3339 with the tablet's own offset, seconds precision.
export function localTimestamp(date = new Date()) {
  const pad = (n) => String(Math.abs(n)).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:`
    + `${pad(date.getMinutes())}:${pad(date.getSeconds())}${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
}

// Every question of a definition in asking order (metadata first), with where it sits.
export function questions(definition) {
  const out = [];
  for (const q of definition.metadata || []) out.push({ ...q, section: null, metadata: true });
  const walk = (sections, trail) => {
    for (const s of sections || []) {
      for (const q of s.questions || []) out.push({ ...q, section: s.id, trail: [...trail, s.id] });
      walk(s.sections, [...trail, s.id]);
    }
  };
  walk(definition.sections, []);
  return out;
}

const compiled = new WeakMap();
function rules(definition) {
  if (!compiled.has(definition)) {
    compiled.set(definition, questions(definition).map((q) => ({
      ...q, expr: q.relevance ? parse(q.relevance) : null,
    })));
  }
  return compiled.get(definition);
}

// The questions some relevance rule reads: only a change to one of these can show or hide another.
export function referencedQuestions(definition) {
  const out = new Set();
  for (const rule of rules(definition)) for (const id of rule.expr ? rule.expr.references : []) out.add(id);
  return out;
}

// A bound fact's value from its home, as the server's _home reads it.
export function homeValue(record, binds) {
  const [kind, name] = binds.split(".");
  if (kind === "participant") {
    const first = (record.participants || [])[0];
    if (!first) return null;
    let value = first[name];
    if (typeof value === "string") value = value.trim() || null;
    return value ?? null;
  }
  if (name === "started_at") return typeof record.started_at === "string" ? record.started_at.slice(0, 10) : null;
  return MODES.includes(record[name]) ? record[name] : null;
}

export function setHome(record, binds, value) {
  const [kind, name] = binds.split(".");
  if (kind === "participant") {
    record.participants[0][name] = value === "" && name === "position" ? null : value;
  } else if (name === "started_at") {
    const rest = typeof record.started_at === "string" ? record.started_at.slice(10) : "T09:00:00+00:00";
    if (value) record.started_at = `${value}${rest}`;
  } else {
    record[name] = value;
  }
}

// Consent is each participant's own. One who refused records nothing more (no quote of theirs is
// kept or sent); the interview goes on for the others, and stops only when nobody consents.
export function refusedConsent(record, letter) {
  return (record.participants || []).find((p) => p.letter === letter)?.consent_given === false;
}

export function nobodyConsents(record) {
  const people = record.participants || [];
  return people.length > 0 && people.every((p) => p.consent_given === false);
}

// Who may be quoted: the participants who have not refused.
export function speakers(record) {
  return (record.participants || []).filter((p) => p.consent_given !== false).map((p) => p.letter);
}

// Which questions are asked, on the answers the record would send.
export function relevantAnswers(record, definition, raw = record.answers || {}) {
  const valid = {};
  const asked = new Set();
  const answers = {};
  for (const rule of rules(definition)) {
    if (rule.binds) {
      const home = homeValue(record, rule.binds);
      if (home !== null) valid[rule.id] = home;
    }
  }
  const refused = nobodyConsents(record);
  for (const rule of rules(definition)) {
    const relevant = rule.expr ? rule.expr.evaluate(valid) : true;
    if (!relevant) continue;
    if (refused && !rule.metadata) continue; // without consent nothing more is recorded
    asked.add(rule.id);
    if (rule.binds) continue; // its home holds it
    const value = raw[rule.id];
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) continue;
    answers[rule.id] = value;
    valid[rule.id] = value;
  }
  return { asked, answers };
}

// Quote offsets count code points (docs/sync.md); an edited answer moves or loses the passage.
export function anchorQuote(quote, answer) {
  const chars = Array.from(typeof answer === "string" ? answer : "");
  const at = (s, e) => chars.slice(s, e).join("");
  if (quote.start != null && at(quote.start, quote.end) === quote.text) return quote;
  const textChars = Array.from(quote.text);
  for (let s = 0; s + textChars.length <= chars.length; s += 1) {
    if (at(s, s + textChars.length) === quote.text) return { ...quote, start: s, end: s + textChars.length };
  }
  return null;
}

// The probes ticked, as the record's probes_used sends them: indexes into each question's probes,
// in order, only for questions that are asked (the server refuses ticks on one that is not). Ticks
// that an older release of the app kept outside the record (interview.local.probes) count too.
export function probesUsed(interview, definition, asked) {
  const r = interview.record;
  const older = interview.local?.probes || {};
  const out = {};
  for (const rule of rules(definition)) {
    const count = (rule.probes || []).length;
    if (!count || !asked.has(rule.id)) continue;
    const ticked = new Set([...(r.probes_used?.[rule.id] || []), ...(older[rule.id] || [])]);
    const list = [...ticked].filter((k) => Number.isInteger(k) && k >= 0 && k < count).sort((a, b) => a - b);
    if (list.length) out[rule.id] = list;
  }
  return out;
}

// Once per interview: ticks an older release kept on the tablet only move into the record.
export function adoptLocalProbes(interview) {
  const older = interview.local?.probes;
  if (!older) return false;
  const record = interview.record;
  for (const [qid, list] of Object.entries(older)) {
    if (!Array.isArray(list) || !list.length) continue;
    const merged = new Set([...(record.probes_used?.[qid] || []), ...list]);
    record.probes_used = { ...(record.probes_used || {}), [qid]: [...merged].sort((a, b) => a - b) };
  }
  delete interview.local.probes;
  return true;
}

// The record exactly as it is sent: irrelevant answers, their quotes and probe ticks left out.
export function outgoing(interview, definition) {
  const r = interview.record;
  const { asked, answers } = relevantAnswers(r, definition);
  const quotes = [];
  for (const q of r.quotes || []) {
    if (!(q.question_id in answers)) continue;
    if (refusedConsent(r, q.participant || "A")) continue;
    const anchored = anchorQuote(q, answers[q.question_id]);
    if (!anchored) continue;
    const quote = { id: q.id, question_id: q.question_id, text: anchored.text, start: anchored.start, end: anchored.end };
    if (q.participant && q.participant !== "A") quote.participant = q.participant;
    if (q.tags && q.tags.length) quote.tags = q.tags;
    quotes.push(quote);
  }
  const participants = r.participants.map((p) => {
    const out = { letter: p.letter };
    for (const f of PARTICIPANT_FIELDS) out[f] = p[f] === undefined || p[f] === "" ? null : p[f];
    out.agency = (p.agency || "").trim();
    if (out.consent_given !== true) { out.consent_date = null; out.consent_recorded_how = null; }
    return out;
  });
  const record = {
    study: r.study,
    country: r.country,
    activity: r.activity,
    interview_number: r.interview_number,
    participants,
    instrument: { slug: r.instrument.slug, version: r.instrument.version },
    language: r.language,
    mode: r.mode,
    started_at: r.started_at,
    status: r.status,
    answers,
    quotes,
    notes: r.notes ? r.notes : null,
  };
  if (r.ended_at) record.ended_at = r.ended_at;
  // Only when something is ticked: a record without ticks stays as older releases sent it.
  const ticks = probesUsed(interview, definition, asked);
  if (Object.keys(ticks).length) record.probes_used = ticks;
  return record;
}

// What keeps a record from being sent at all (the server refuses such drafts too).
export function notReady(record) {
  const missing = [];
  record.participants.forEach((p, i) => {
    if (!(p.agency || "").trim()) missing.push({ path: `participants[${i}].agency`, letter: p.letter, what: "agency" });
  });
  if (!MODES.includes(record.mode)) missing.push({ path: "mode", what: "mode" });
  return missing;
}

// The server's checks of a complete record that the tablet can make itself.
export function completionProblems(interview, definition) {
  const r = interview.record;
  const problems = notReady(r);
  r.participants.forEach((p, i) => {
    if (typeof p.consent_given !== "boolean") {
      problems.push({ path: `participants[${i}].consent_given`, letter: p.letter, what: "consent" });
    }
  });
  const { asked, answers } = relevantAnswers(r, definition);
  for (const rule of rules(definition)) {
    if (!rule.required || !asked.has(rule.id)) continue;
    const value = rule.binds ? homeValue(r, rule.binds) : answers[rule.id];
    // The server's rule for required answers: an empty string or list does not count.
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) problems.push({ path: `answers.${rule.id}`, question: rule.id, what: "required" });
  }
  return problems;
}
