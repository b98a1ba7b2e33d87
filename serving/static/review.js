// Review page: plain JavaScript, no build step. Talks to the same API as curl does.
"use strict";

const TOKEN_KEY = "clinops-token";
const statusEl = document.getElementById("status");

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function say(message, isError) {
  statusEl.textContent = message;
  statusEl.className = isError ? "error" : "";
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    // every error names the field and the rule (see clinops/docs/serving.md)
    const first = (data.errors && data.errors[0]) || { field: "request", rule: response.statusText };
    throw new Error(`${response.status}: ${first.field}: ${first.rule}`);
  }
  return data;
}

function pct(p) { return (100 * p).toFixed(1) + " %"; }

function renderCase(item) {
  const node = document.getElementById("case-template").content.firstElementChild.cloneNode(true);
  const d = item.details || {};
  node.dataset.itemId = item.item_id;
  node.dataset.kind = item.kind;
  const reasons = node.querySelector(".reasons");
  const addReason = (text) => {
    const li = document.createElement("li");
    li.textContent = text.replaceAll("_", " ");
    reasons.appendChild(li);
  };
  if (item.kind === "prediction_escalation") {
    node.dataset.predictionId = item.prediction_id;
    node.querySelector(".pid").textContent = "prediction " + item.prediction_id;
    node.querySelector(".prob").textContent = pct(d.probability);
    node.querySelector(".set").textContent = "conformal set {" + d.conformal_set.join(", ") + "}";
    for (const reason of d.reasons) addReason(reason);
    if (item.overridden) {
      node.classList.add("done");
      node.querySelector(".set").textContent += " · overridden";
    }
    const body = node.querySelector(".contrib tbody");
    const scale = Math.max(1e-9, ...d.contributions.map(c => Math.abs(c.contribution)));
    for (const c of d.contributions) {
      const tr = document.createElement("tr");
      const value = c.value === null ? "imputed"
        : (typeof c.value === "number" ? String(Number(c.value.toPrecision(4))) : String(c.value));
      tr.innerHTML = `<td></td><td></td><td><span class="bar ${c.contribution >= 0 ? "up" : "down"}"></span> <span class="num"></span></td>`;
      // set through the DOM, not a style attribute: the page's Content-Security-Policy forbids inline styles
      tr.querySelector(".bar").style.width = `${(60 * Math.abs(c.contribution) / scale).toFixed(0)}px`;
      tr.children[0].textContent = c.feature;
      tr.children[1].textContent = value;
      tr.querySelector(".num").textContent = (c.contribution >= 0 ? "+" : "") + c.contribution.toFixed(3);
      body.appendChild(tr);
    }
  } else {
    // a model-level item (suspension, drift watch, fairness alert): no patient, no override
    node.querySelector(".pid").textContent = `${item.kind.replaceAll("_", " ")} (item ${item.item_id})`;
    node.querySelector(".contrib").remove();
    node.querySelector("button.override").remove();
    addReason(item.reason);
  }
  const overrideForm = node.querySelector(".override-form");
  const resolveForm = node.querySelector(".resolve-form");
  const overrideButton = node.querySelector("button.override");
  if (overrideButton) overrideButton.addEventListener("click", () => { overrideForm.hidden = false; resolveForm.hidden = true; });
  node.querySelector("button.resolve").addEventListener("click", () => { resolveForm.hidden = false; overrideForm.hidden = true; });
  for (const cancel of node.querySelectorAll("button.cancel")) {
    cancel.addEventListener("click", () => { overrideForm.hidden = true; resolveForm.hidden = true; });
  }
  overrideForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = overrideForm.elements.reason.value.trim();
    try {
      const result = await api("POST", `/v1/predictions/${encodeURIComponent(item.prediction_id)}/override`,
        reason ? { reason } : {});
      say(`Override recorded for ${item.prediction_id} (audit record ${result.audit_record_id || "n/a"})`);
      await refresh();
    } catch (error) { say(error.message, true); }
  });
  resolveForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const note = resolveForm.elements.note.value.trim();
    try {
      const result = await api("POST", `/v1/review-queue/${item.item_id}/resolve`, note ? { note } : {});
      say(`Item ${item.item_id} resolved (audit record ${result.audit_record_id || "n/a"})`);
      await refresh();
    } catch (error) { say(error.message, true); }
  });
  return node;
}

async function refresh() {
  const [governance, queue] = await Promise.all([api("GET", "/v1/governance"), api("GET", "/v1/review-queue")]);
  const stateEl = document.getElementById("model-state");
  stateEl.textContent = "model state: " + governance.state;
  stateEl.className = "state" + (governance.state === "ACTIVE" ? "" : " suspended");
  const container = document.getElementById("queue");
  container.replaceChildren(...queue.items.map(renderCase));
  document.getElementById("count").textContent = `(${queue.items.length})`;
}

document.getElementById("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  try { await refresh(); say("Signed in; queue loaded"); } catch (error) { say(error.message, true); }
});

if (token()) { refresh().catch(error => say(error.message, true)); }
