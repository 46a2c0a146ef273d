// caucus: what the join and admin pages share: calls to the bridge's HTTP API,
// and the browser's side of WHIP (RFC 9725).
"use strict";

const caucusApi = {
  // fetch with a bearer token; JSON in and out; throws {status, error, detail}
  async call(method, path, token, body) {
    const headers = {};
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    if (!r.ok) throw { status: r.status, error: (data && data.error) || "error", detail: (data && data.detail) || r.statusText };
    return data;
  },

  // Join a room by WHIP: returns {pc, resource, stream}; `onTrack` gets the
  // room's audio as a MediaStream.
  async whip(room, token, onTrack) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendrecv", streams: [stream] });
    pc.ontrack = (e) => onTrack(e.streams[0] || new MediaStream([e.track]));
    await pc.setLocalDescription(await pc.createOffer());
    // the bridge is ICE-lite: host candidates are enough, wait for them briefly
    await new Promise((done) => {
      if (pc.iceGatheringState === "complete") return done();
      const t = setTimeout(done, 1500);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); done(); }
      });
    });
    const r = await fetch("/v1/rooms/" + encodeURIComponent(room) + "/whip", {
      method: "POST",
      headers: { "Content-Type": "application/sdp", "Authorization": "Bearer " + token },
      body: pc.localDescription.sdp,
    });
    if (r.status !== 201) {
      let e = { status: r.status, error: "whip", detail: await r.text() };
      try { const j = JSON.parse(e.detail); e.error = j.error; e.detail = j.detail; } catch (x) { /* not JSON */ }
      pc.close();
      stream.getTracks().forEach((t) => t.stop());
      throw e;
    }
    const resource = r.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    return { pc, resource, stream };
  },

  // Leave: DELETE the WHIP resource, close the connection.
  async leave(session, token) {
    try { await fetch(session.resource, { method: "DELETE", headers: { "Authorization": "Bearer " + token } }); } catch (e) { /* the bridge notices anyway */ }
    session.pc.close();
    session.stream.getTracks().forEach((t) => t.stop());
  },

  // Follow a Server-Sent Events stream with a bearer token (EventSource cannot
  // send one): `onEvent(type, data)` for each event, until the stream ends.
  async follow(path, token, onEvent) {
    const r = await fetch(path, { headers: { "Authorization": "Bearer " + token, "Accept": "text/event-stream" } });
    if (!r.ok || !r.body) return;
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let type = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) type = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) onEvent(type, data);
      }
    }
  },

  // `f`, at most once per `ms` however often this is called (a burst of
  // events refreshes a list once)
  debounce(f, ms) {
    let pending = null;
    return () => { if (!pending) pending = setTimeout(() => { pending = null; f(); }, ms); };
  },

  // The room a join token names (its first field, hex-encoded).
  tokenRoom(token) {
    const hex = (token || "").split(".")[0] || "";
    let s = "";
    for (let i = 0; i + 1 < hex.length; i += 2) s += String.fromCharCode(parseInt(hex.substr(i, 2), 16));
    try { return decodeURIComponent(escape(s)); } catch (e) { return s; }
  },

  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  },
};
