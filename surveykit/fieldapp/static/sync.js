// Push and pull as docs/sync.md and docs/client.md lay down: save first, one change per record in
// flight, resend exactly the same change, forget a change only on its receipt, back off.

import * as api from "./api.js";
import * as store from "./store.js";
import { notReady, outgoing } from "./record.js";
import { loadDefinition } from "./instruments.js";

export const BATCH = 25;

// Key order does not matter (the server's content hash sorts keys too).
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

function same(a, b) {
  return canonical(a) === canonical(b);
}

// The change this interview would send now, or null when there is nothing new.
export async function changeFor(interview) {
  if (interview.pending) return interview.pending;
  if (notReady(interview.record).length) return null;
  const definition = await loadDefinition(interview.record.instrument, interview.record.language);
  if (!definition) return null;
  const record = outgoing(interview, definition);
  if (interview.acked && same(interview.acked, record)) return null;
  if (interview.rejected && same(interview.rejected.record, record)) return null; // fix it first
  return { uuid: interview.uuid, base_revision: interview.base_revision, record, edits: interview.edits || 0 };
}

// What goes on the wire: exactly the documented change, nothing of the tablet's bookkeeping.
function wire(change) {
  return { uuid: change.uuid, base_revision: change.base_revision, record: change.record };
}

export function unsentState(interview) {
  if (interview.pending) return "unsent";
  if (interview.rejected) return "rejected";
  if (interview.conflict && !interview.conflict.seen) return "conflict";
  return interview.dirty ? "unsent" : interview.acked ? "sent" : "unsent";
}

export async function interviewsOf(deviceId) {
  return store.all("interviews", "device_id", deviceId);
}

// Everything this device has not had a receipt for, as one sync batch (docs/sync.md).
export async function backupBatch(deviceId) {
  const changes = [];
  for (const interview of await interviewsOf(deviceId)) {
    const change = interview.pending
      || (await changeFor({ ...interview, rejected: null }))
      || (interview.rejected && { uuid: interview.uuid, base_revision: interview.base_revision, record: interview.rejected.record });
    if (change) changes.push(wire(change));
  }
  return { changes };
}

async function applyResult(uuid, change, result) {
  return store.update("interviews", uuid, (it) => {
    if (!it) return undefined;
    const now = new Date().toISOString();
    const next = { ...it, pending: null };
    if (["created", "updated", "unchanged"].includes(result.result) && result.revision) {
      const receipt = { result: result.result, revision: result.revision, content_hash: result.content_hash, at: now };
      next.receipts = [...(it.receipts || []), receipt];
      next.base_revision = Math.max(it.base_revision || 0, result.revision);
      next.acked = change.record;
      next.rejected = null;
      next.field_conflicts = result.field_conflicts || [];
    } else if (result.result === "conflict") {
      // Kept on the server for a coordinator; carry on from the current record.
      next.conflict = {
        conflict_id: result.conflict_id, status: result.conflict_status, mine: change.record,
        content_hash: result.content_hash, at: now,
      };
      next.receipts = [...(it.receipts || []), { result: "conflict", conflict_id: result.conflict_id, content_hash: result.content_hash, at: now }];
      if (result.current) {
        next.record = { ...result.current.record, quotes: result.current.record.quotes || [], notes: result.current.record.notes ?? "" };
        next.base_revision = result.current.revision;
        next.acked = result.current.record;
      }
      next.rejected = null;
    } else if (result.result === "rejected") {
      next.rejected = { code: result.code, message: result.message, errors: result.errors || [], record: change.record, at: now };
    } else {
      return { ...it }; // an answer that does not match: keep the change, send it again
    }
    // An edit made while this change was on its way is still to be sent.
    next.dirty = (it.edits || 0) !== (change.edits || 0);
    return next;
  });
}

function matches(result, change) {
  return result && result.uuid === change.uuid.toLowerCase();
}

// One push of everything unsent, in batches. Throws api.Offline / ApiError / SessionEnded.
export async function push(deviceId, onProgress = () => {}) {
  const changes = [];
  for (const interview of await interviewsOf(deviceId)) {
    const change = await changeFor(interview);
    if (!change) continue;
    if (!interview.pending) {
      // Saved before it is sent: a lost answer means the very same change goes again.
      await store.update("interviews", interview.uuid, (it) => ({ ...it, pending: change }));
    }
    changes.push(change);
  }
  const counts = { created: 0, updated: 0, unchanged: 0, conflict: 0, rejected: 0 };
  for (let i = 0; i < changes.length; i += BATCH) {
    const batch = changes.slice(i, i + BATCH);
    const { data } = await api.call(deviceId, "POST", "/api/v1/sync", { body: { changes: batch.map(wire) } });
    for (const result of data.results || []) {
      const change = batch[result.index];
      if (!change || !matches(result, change)) continue;
      await applyResult(change.uuid, change, result);
      if (result.result in counts) counts[result.result] += 1;
    }
    onProgress(Math.min(i + BATCH, changes.length), changes.length);
  }
  return counts;
}

function studiesOf(session) {
  return [...new Set((session.grants || []).map((g) => g.study).filter((s) => s !== "*"))];
}

const REGISTRY_FIELDS = ["agency", "position", "consent_given", "consent_date", "consent_recorded_how"];

// A coordinator's correction of a participant (docs/client.md, rule 13): written into this
// device's records of that interview and queued as an edit, so record and registry agree again.
// A field the researcher changed locally (it differs from both the server's copy and the registry
// entry known before) is left alone; its push tells whether it conflicts.
export function takeRegistryInto(interview, registry, known) {
  const record = interview.record;
  const entry = (record.participants || []).find((p) => p.letter === registry.letter);
  if (!entry) return null;
  const server = ((interview.acked || {}).participants || []).find((p) => p.letter === registry.letter);
  let changed = false;
  for (const name of REGISTRY_FIELDS) {
    if (!(name in registry)) continue;
    const wanted = registry[name] ?? null;
    const local = entry[name] ?? null;
    if (same(wanted, local)) continue;
    const untouched = (server && same(server[name] ?? null, local)) || (known && same(known[name] ?? null, local));
    if (!untouched) continue;
    entry[name] = wanted;
    changed = true;
  }
  if (!changed) return null;
  return { ...interview, record, edits: (interview.edits || 0) + 1, dirty: true, updated_at: new Date().toISOString() };
}

function interviewKey(study, r) {
  return `${study}/${r.country}/${r.activity}/${r.interview_number}`;
}

// This device's records by interview, read once per pull (a pull adds no record).
function localIndex(deviceId) {
  let index = null;
  return {
    async byInterview() {
      if (!index) {
        index = new Map();
        for (const it of await interviewsOf(deviceId)) {
          const key = interviewKey(it.record.study, it.record);
          index.set(key, [...(index.get(key) || []), it.uuid]);
        }
      }
      return index;
    },
  };
}

async function applyEntry(deviceId, entry, instrumentsToFetch, study, local) {
  if (entry.kind === "participant") {
    const key = `${deviceId}:${entry.key}`;
    const known = await store.get("registry", key);
    if (entry.object === null) return store.remove("registry", key);
    await store.put(["registry", { key, device_id: deviceId, ...entry.object }]);
    const o = entry.object;
    for (const uuid of (await local.byInterview()).get(interviewKey(study, o)) || []) {
      await store.update("interviews", uuid, (current) => (current ? takeRegistryInto(current, o, known) ?? undefined : undefined));
    }
    return null;
  }
  if (entry.kind === "instrument" && entry.object) {
    instrumentsToFetch.add(`${entry.object.slug}@${entry.object.version}`);
    return null;
  }
  if (entry.kind === "interview" && entry.object) {
    return store.update("interviews", entry.key, (it) => {
      if (!it || it.device_id !== deviceId) return undefined; // only this device's own records
      if (it.pending || it.dirty || (it.base_revision || 0) >= entry.object.revision) return undefined;
      const record = entry.object.record;
      return { ...it, record: { ...record, quotes: record.quotes || [], notes: record.notes ?? "" }, base_revision: entry.object.revision, acked: record };
    });
  }
  if (entry.kind === "conflict" && entry.object) {
    return store.update("interviews", entry.object.uuid, (it) => {
      if (!it || !it.conflict || it.conflict.conflict_id !== entry.object.id) return undefined;
      return { ...it, conflict: { ...it.conflict, status: entry.object.status } };
    });
  }
  return null;
}

export async function pull(deviceId) {
  const fetchLater = new Set();
  const local = localIndex(deviceId);
  let session = await store.get("sessions", deviceId);
  for (const study of studiesOf(session)) {
    let more = true;
    while (more) {
      session = await store.get("sessions", deviceId);
      const cursor = (session.cursors || {})[study] || 0;
      let data;
      try {
        ({ data } = await api.call(deviceId, "GET", `/api/v1/sync/changes?study=${encodeURIComponent(study)}&cursor=${cursor}&limit=500`));
      } catch (err) {
        if (err instanceof api.ApiError && err.code === "cursor_ahead") {
          await store.update("sessions", deviceId, (s) => ({ ...s, cursors: { ...s.cursors, [study]: 0 } }));
          continue;
        }
        throw err;
      }
      for (const entry of data.changes) await applyEntry(deviceId, entry, fetchLater, study, local);
      await store.update("sessions", deviceId, (s) => ({ ...s, cursors: { ...(s.cursors || {}), [study]: data.next_cursor } }));
      more = data.has_more;
    }
  }
  return fetchLater;
}

// The device's number blocks as the server knows them: adopts any whose answer was lost.
export async function refreshBlocks(deviceId) {
  const { data } = await api.call(deviceId, "GET", "/api/v1/blocks");
  const known = new Set((await store.all("blocks", "device_id", deviceId)).map((b) => b.id));
  for (const block of data.blocks) {
    if (!known.has(block.id)) await store.put(["blocks", { ...block, key: `${deviceId}:${block.id}`, device_id: deviceId, used: [] }]);
  }
}

export async function reserveBlock(deviceId, study, country, activity, size = 10) {
  try {
    const { data } = await api.call(deviceId, "POST", "/api/v1/blocks", { body: { study, country, activity, size } });
    await store.put(["blocks", { ...data, key: `${deviceId}:${data.id}`, device_id: deviceId, used: [] }]);
    return data;
  } catch (err) {
    // Reserving twice reserves two blocks: after a lost answer, ask which blocks exist instead.
    if (err instanceof api.Offline || (err instanceof api.ApiError && err.status >= 500)) {
      await refreshBlocks(deviceId).catch(() => {});
    }
    throw err;
  }
}

export function unusedNumbers(block) {
  const used = new Set(block.used || []);
  const out = [];
  if (block.released_at) return out;
  for (let n = block.first_number; n <= block.last_number; n += 1) if (!used.has(n)) out.push(n);
  return out;
}
