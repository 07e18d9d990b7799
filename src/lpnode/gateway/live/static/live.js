// lpnode live page: the webcam goes to the gateway over WHIP, the processed stream comes back over WHEP.
// Text from the network is only ever set through textContent.
"use strict";

const BASE = "/live/video-to-video/";
const STREAM_NAME = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$/;
const $ = (id) => document.getElementById(id);
let publisher = null; // {pc, media, location, stream}
let viewer = null; // {pc, location}

function say(text, bad) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("bad", Boolean(bad));
}

function path(url) {
  // Resource URLs are absolute; keep the path so every request stays on this origin.
  return url ? new URL(url, window.location.href).pathname : null;
}

function authHeaders() {
  const key = $("key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function problem(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) return `${response.status}: ${body.error.message}`;
  } catch (_) { /* not JSON */ }
  return `${response.status}: ${text.trim() || response.statusText}`;
}

function gathered(pc) {
  // The gateway does not take trickled candidates: send the offer once gathering is done (or after 3 s).
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}

async function negotiate(pc, url, headers) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", ...headers },
    body: pc.localDescription.sdp,
  });
  if (response.status !== 201) throw new Error(await problem(response));
  const location = path(response.headers.get("Location"));
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  return location;
}

function readParams() {
  const text = $("params").value.trim() || "{}";
  let params;
  try {
    params = JSON.parse(text);
  } catch (error) {
    throw new Error("Params are not JSON: " + error.message);
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw new Error("Params must be a JSON object, like {\"prompt\": \"a cat\"}");
  }
  return JSON.stringify(params);
}

async function start(event) {
  event.preventDefault();
  if (publisher) return;
  const stream = $("stream").value.trim();
  const pipeline = $("pipeline").value.trim();
  if (!STREAM_NAME.test(stream)) return say("The stream name takes 1 to 128 letters, digits, '.', '_', '~' or '-'.", true);
  if (!pipeline) return say("Choose a pipeline.", true);
  if (!navigator.mediaDevices || !window.RTCPeerConnection) {
    return say("This browser cannot use the camera here: open the page on localhost or over HTTPS.", true);
  }
  let params;
  try {
    params = readParams();
  } catch (error) {
    return say(error.message, true);
  }
  setRunning(true);
  let media = null;
  let pc = null;
  try {
    say("Asking for the camera…");
    media = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 512 }, height: { ideal: 512 }, frameRate: { ideal: 30 } },
      audio: $("audio").checked,
    });
    $("camera").srcObject = media;
    pc = new RTCPeerConnection();
    for (const track of media.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [media] });
    say("Starting the stream on an orchestrator…");
    const query = new URLSearchParams({ pipeline, params });
    const location = await negotiate(pc, `${BASE}${encodeURIComponent(stream)}/whip?${query}`, authHeaders());
    publisher = { pc, media, location, stream };
    pc.addEventListener("connectionstatechange", () => {
      if (publisher && publisher.pc === pc && ["failed", "closed"].includes(pc.connectionState)) {
        stop().then(() => say("The connection to the gateway was lost.", true));
      }
    });
    say(`Publishing “${stream}” through ${pipeline}; the output appears after the first processed segment.`);
    await play(stream);
  } catch (error) {
    if (!publisher) {
      if (pc) pc.close();
      if (media) media.getTracks().forEach((t) => t.stop());
      $("camera").srcObject = null;
      setRunning(false);
    }
    say(`Could not start: ${error.message}`, true);
  }
}

async function play(stream) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const shown = new MediaStream();
  pc.addEventListener("track", (event) => {
    shown.addTrack(event.track);
    $("output").srcObject = shown;
  });
  const location = await negotiate(pc, `${BASE}${encodeURIComponent(stream)}/whep`, {});
  viewer = { pc, location };
  $("output-note").textContent = "(WHEP)";
}

async function remove(location) {
  if (!location) return;
  try {
    await fetch(location, { method: "DELETE", headers: authHeaders(), keepalive: true });
  } catch (_) { /* the gateway may be gone already */ }
}

async function stop() {
  const p = publisher;
  const v = viewer;
  publisher = null;
  viewer = null;
  // DELETE first: closing a connection first would end the resource before the DELETE arrives.
  if (v) {
    await remove(v.location);
    v.pc.close();
  }
  if (p) {
    await remove(p.location);
    p.pc.close();
    p.media.getTracks().forEach((t) => t.stop());
  }
  $("camera").srcObject = null;
  $("output").srcObject = null;
  $("output-note").textContent = "";
  setRunning(false);
  say("Stopped.");
}

async function update(event) {
  event.preventDefault();
  if (!publisher) return;
  let params;
  try {
    params = readParams();
  } catch (error) {
    return say(error.message, true);
  }
  const response = await fetch(`${BASE}${encodeURIComponent(publisher.stream)}/update`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: params,
  });
  if (response.ok) say("Params sent.");
  else say(`Params not sent: ${await problem(response)}`, true);
}

function setRunning(running) {
  $("start").disabled = running;
  $("stop").disabled = !running;
  $("update").disabled = !running;
  for (const id of ["stream", "pipeline", "audio", "key"]) $(id).disabled = running;
}

async function loadModels() {
  try {
    const response = await fetch("/live/models.json");
    const data = await response.json();
    const list = $("pipelines");
    for (const model of data.models) list.append(new Option(model, model));
    if (!$("pipeline").value && data.models.length) $("pipeline").value = data.models[0];
    $("key-label").hidden = !data.keys;
    say(data.models.length
      ? `${data.models.length} live pipeline(s) offered by this gateway's orchestrators.`
      : "No orchestrator advertises a live pipeline yet; type a pipeline name.");
  } catch (error) {
    say("Could not list the live pipelines; type a pipeline name.", true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("stream").value = "webcam-" + Math.random().toString(36).slice(2, 8);
  $("start-form").addEventListener("submit", start);
  $("params-form").addEventListener("submit", update);
  $("stop").addEventListener("click", () => { stop(); });
  window.addEventListener("pagehide", () => { if (publisher || viewer) stop(); });
  loadModels();
});
