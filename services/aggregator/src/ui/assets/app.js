// The dashboard's only script. Three jobs:
// 1. [data-live]: re-fetch the element's content from its URL every few seconds (job lists, a
//    job's page), so statuses change without a reload; a 401 means the session ended.
// 2. form[data-api]: send the form as JSON to the public API with the session's CSRF value, show
//    the API's problem detail beside the form, and go on as data-next says (reload, or to the job
//    a POST /jobs accepted).
// 3. [data-opens] / [data-closes]: open and close a <dialog> (the triage dialog).
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
const LIVE_MS = 2000;

function live(element) {
  const url = element.dataset.live;
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { accept: "text/html" } });
      if (response.status === 401) {
        location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (response.ok) {
        const html = await response.text();
        if (html !== element.dataset.last) {
          element.dataset.last = html;
          element.innerHTML = html;
        }
      }
    } catch (_) {
      // A failed refresh is retried at the next tick.
    } finally {
      busy = false;
    }
  }, LIVE_MS);
}

// The form's fields as the API's JSON: empty fields are left out; data-type="bool" fields are
// booleans.
function body(form) {
  const out = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled) continue;
    const value = field.value.trim();
    if (value === "") continue;
    out[field.name] = field.dataset.type === "bool" ? value === "true" : value;
  }
  return out;
}

async function send(event) {
  const form = event.target;
  if (!form.matches("form[data-api]")) return;
  event.preventDefault();
  const error = form.querySelector(".error");
  const button = form.querySelector('button[type="submit"]');
  if (error) error.hidden = true;
  if (button) button.disabled = true;
  try {
    const response = await fetch(form.dataset.api, {
      method: form.dataset.method || "POST",
      credentials: "same-origin",
      headers: {
        "content-type": "application/json",
        accept: "application/json",
        "x-csrf-token": csrf(),
        "idempotency-key": crypto.randomUUID ? crypto.randomUUID() : String(Date.now()),
      },
      body: JSON.stringify(body(form)),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      if (response.status === 401) {
        location.assign("/ui/login?next=" + encodeURIComponent(location.pathname));
        return;
      }
      const text = answer.detail || answer.title || "The request was refused (" + response.status + ").";
      if (error) {
        error.textContent = text;
        error.hidden = false;
      }
      return;
    }
    if (form.dataset.next === "job" && answer.uuid) {
      location.assign("/ui/jobs/" + encodeURIComponent(answer.uuid));
    } else {
      location.reload();
    }
  } catch (_) {
    if (error) {
      error.textContent = "The server did not answer; try again.";
      error.hidden = false;
    }
  } finally {
    if (button) button.disabled = false;
  }
}

document.addEventListener("submit", send);
document.addEventListener("click", (event) => {
  const opener = event.target.closest("[data-opens]");
  if (opener) document.getElementById(opener.dataset.opens)?.showModal();
  const closer = event.target.closest("[data-closes]");
  if (closer) document.getElementById(closer.dataset.closes)?.close();
});
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(live);
});
