// The documented API, and the device session's tokens (docs/accounts.md, docs/client.md).
// A refresh token is spent by its first use: the state is saved as "in_flight" before a refresh
// is sent, and a refresh whose answer never came is "in_doubt" and never sent again.

import * as store from "./store.js";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.details = (body && body.details) || [];
    this.body = body;
  }
}

export class Offline extends Error {}
export class SessionEnded extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

const SKEW_MS = 30_000;

async function parse(response) {
  if (response.status === 204 || response.status === 304) return null;
  const text = await response.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return { message: text.slice(0, 200) }; }
}

export async function request(method, path, { body, token, headers = {} } = {}) {
  if (!navigator.onLine) throw new Offline("offline");
  const init = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store" };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new Offline(String(err));
  }
  const data = await parse(response);
  if (response.status === 304) return { status: 304, data: null, response };
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data, response };
}

export async function activate(code) {
  const { data } = await request("POST", "/api/v1/devices/activate", { body: { code } });
  const me = (await request("GET", "/api/v1/me", { token: data.access_token })).data;
  const existing = await store.get("sessions", data.device_id);
  // Re-enrolment gives the same device id: its records, blocks and cursors come back with it.
  const session = {
    ...(existing || { cursors: {}, last_sync: null, created_at: new Date().toISOString() }),
    device_id: data.device_id,
    username: me.username,
    grants: me.grants,
    access_token: data.access_token,
    access_expires: Date.now() + data.expires_in * 1000,
    refresh_token: data.refresh_token,
    refresh_state: "ok",
    ended_reason: null,
    signed_out: false,
  };
  await store.put(["sessions", session], ["kv", { key: "active_device", value: session.device_id }]);
  return session;
}

// A refresh left "in_flight" by a closed app may have been spent: never send it again.
export async function settleInterruptedRefreshes() {
  for (const session of await store.all("sessions")) {
    if (session.refresh_state === "in_flight") {
      await store.update("sessions", session.device_id, (s) => ({ ...s, refresh_state: "in_doubt" }));
    }
  }
}

const refreshing = new Map();

async function refresh(deviceId) {
  if (!refreshing.has(deviceId)) {
    refreshing.set(deviceId, doRefresh(deviceId).finally(() => refreshing.delete(deviceId)));
  }
  return refreshing.get(deviceId);
}

async function doRefresh(deviceId) {
  const session = await store.get("sessions", deviceId);
  if (!session || session.refresh_state !== "ok") throw new SessionEnded(session?.ended_reason || "in_doubt");
  if (!navigator.onLine) throw new Offline("offline");
  await store.put(["sessions", { ...session, refresh_state: "in_flight" }]);
  let response;
  try {
    response = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ refresh_token: session.refresh_token }),
      cache: "no-store",
    });
  } catch (err) {
    await store.put(["sessions", { ...session, refresh_state: "in_doubt", ended_reason: "in_doubt" }]);
    throw new SessionEnded("in_doubt");
  }
  const data = await parse(response);
  if (response.ok && data && data.access_token) {
    const next = {
      ...session,
      access_token: data.access_token,
      access_expires: Date.now() + data.expires_in * 1000,
      refresh_token: data.refresh_token,
      refresh_state: "ok",
    };
    await store.put(["sessions", next]);
    return next;
  }
  if (response.status === 401) {
    const reason = session.ended_reason === "revoked" ? "revoked" : "ended";
    await store.put(["sessions", { ...session, refresh_state: "ended", ended_reason: reason }]);
    throw new SessionEnded(reason);
  }
  // surveykit answered with an error: its transaction rolled back, the token is unspent.
  if (data && data.code) {
    await store.put(["sessions", { ...session, refresh_state: "ok" }]);
    throw new ApiError(response.status, data);
  }
  await store.put(["sessions", { ...session, refresh_state: "in_doubt", ended_reason: "in_doubt" }]);
  throw new SessionEnded("in_doubt");
}

async function markRevoked(deviceId) {
  await store.update("sessions", deviceId, (s) => (s ? { ...s, ended_reason: "revoked" } : undefined));
}

// A request as the device: a fresh access token, one refresh on a 401.
export async function call(deviceId, method, path, options = {}) {
  let session = await store.get("sessions", deviceId);
  if (!session) throw new SessionEnded("signed_out");
  if (session.refresh_state !== "ok") throw new SessionEnded(session.ended_reason || session.refresh_state);
  if (session.access_expires - SKEW_MS < Date.now()) session = await refresh(deviceId);
  try {
    return await request(method, path, { ...options, token: session.access_token });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    if (/revoked/.test(err.message) && /device/.test(err.message)) await markRevoked(deviceId);
    session = await refresh(deviceId);
    return request(method, path, { ...options, token: session.access_token });
  }
}
