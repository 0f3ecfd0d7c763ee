// Instruments on the tablet: every version downloaded is kept (a record names the version it was
// started with), the current one revalidated with its ETag so an unchanged one costs a 304.

import * as api from "./api.js";
import * as store from "./store.js";

const memory = new Map();

function key(slug, version, lang) {
  return `${slug}@${version}@${lang}`;
}

export async function loadDefinition(ref, lang) {
  const k = key(ref.slug, ref.version, lang);
  if (memory.has(k)) return memory.get(k);
  const row = await store.get("instruments", k);
  if (!row) return null;
  memory.set(k, row.payload.definition);
  return row.payload.definition;
}

export async function stored() {
  return store.all("instruments");
}

async function saveVersion(payload, lang, etag) {
  await store.put(["instruments", {
    key: key(payload.slug, payload.version, lang), slug: payload.slug, version: payload.version, lang,
    etag, payload, fetched_at: new Date().toISOString(),
  }]);
}

// Downloads (or revalidates) the current version of every instrument the device may use, in each
// of its languages. Returns {downloaded, unchanged, missing}.
export async function refresh(deviceId) {
  const outcome = { downloaded: 0, unchanged: 0, missing: [] };
  const { data } = await api.call(deviceId, "GET", "/api/v1/instruments");
  const etags = (await store.getValue(`etags:${deviceId}`)) || {};
  for (const item of data.instruments) {
    for (const lang of item.languages) {
      const path = `/api/v1/instruments/${encodeURIComponent(item.slug)}?lang=${encodeURIComponent(lang)}`;
      const have = await store.get("instruments", key(item.slug, item.current_version, lang));
      const headers = have && etags[path] ? { "If-None-Match": etags[path] } : {};
      const answer = await api.call(deviceId, "GET", path, { headers });
      if (answer.status === 304) { outcome.unchanged += 1; continue; }
      const etag = answer.response.headers.get("ETag");
      await saveVersion(answer.data, lang, etag);
      if (etag) etags[path] = etag;
      outcome.downloaded += 1;
    }
  }
  await store.setValue(`etags:${deviceId}`, etags);
  await store.setValue(`catalogue:${deviceId}`, data.instruments);
  return outcome;
}

// A numbered version (from the feed, or one a record needs). A version the server no longer
// serves leaves what is stored untouched and says so.
export async function fetchVersion(deviceId, slug, version, lang) {
  try {
    const { data, response } = await api.call(deviceId, "GET",
      `/api/v1/instruments/${encodeURIComponent(slug)}/versions/${version}?lang=${encodeURIComponent(lang)}`);
    await saveVersion(data, lang, response.headers.get("ETag"));
    return true;
  } catch (err) {
    if (err instanceof api.ApiError && err.status === 404) return false;
    throw err;
  }
}

export async function catalogue(deviceId) {
  return (await store.getValue(`catalogue:${deviceId}`)) || [];
}

// The text of a served translatable text ({"text", "lang", "fallback"}) or a plain string.
export function text(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  return value.text || "";
}

export function isFallback(value) {
  return Boolean(value && typeof value === "object" && value.fallback);
}
