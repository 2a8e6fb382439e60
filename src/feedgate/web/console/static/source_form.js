// Test connection: post the form as it is filled in (with its CSRF token) and show the
// collections the server lists, or the error. Text only (textContent): a server's collection
// names and descriptions are untrusted.
(function () {
  "use strict";
  var button = document.getElementById("test-connection");
  var form = document.getElementById("source-form");
  var out = document.getElementById("test-result");
  if (!button || !form || !out) { return; }

  function line(tag, cls, text) {
    var el = document.createElement(tag);
    if (cls) { el.className = cls; }
    el.textContent = text;
    return el;
  }

  function show(answer) {
    out.replaceChildren();
    out.hidden = false;
    if (answer.field !== undefined) {
      out.className = "test-result error";
      var where = answer.field ? " (" + answer.field + ")" : "";
      out.appendChild(line("p", "", "The form cannot be used yet" + where + ": " + answer.error));
      return;
    }
    if (!answer.ok) {
      out.className = "test-result error";
      out.appendChild(line("p", "", "Connection failed: " + answer.error));
      return;
    }
    out.className = "test-result " + (answer.found ? "ok" : "warn");
    out.appendChild(line("p", "", "Connected: " + answer.collections.length +
      " collection(s) at " + answer.asked + "; " + answer.collection +
      (answer.found ? " is among them." : " is NOT among them: check the Collection Name.")));
    var list = document.createElement("ul");
    list.className = "collections";
    answer.collections.forEach(function (c) {
      var item = line("li", c.name === answer.collection ? "mine" : "", c.name);
      if (c.description) { item.appendChild(line("span", "muted small", " " + c.description)); }
      if (c.available === false) { item.appendChild(line("span", "muted small", " (not available)")); }
      list.appendChild(item);
    });
    out.appendChild(list);
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    out.hidden = false;
    out.className = "test-result";
    out.replaceChildren(line("p", "muted", "Asking the server for its collections..."));
    var token = form.querySelector("input[name=csrf_token]").value;
    fetch(button.dataset.url, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRF-Token": token },
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) { throw new Error("the console answered " + response.status); }
      return response.json();
    }).then(show).catch(function (err) {
      show({ ok: false, error: String(err.message || err) });
    }).finally(function () { button.disabled = false; });
  });
}());
