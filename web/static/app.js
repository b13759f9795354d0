// Progressive enhancement; every action also works without script.
// A form with data-confirm (取消, 削除) asks first, naming what will happen.
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) { event.preventDefault(); }
});
// A mail opened with "e" from the list: the 対象外 reason is ready to type.
if (window.location.hash === "#dismiss") {
  var reason = document.getElementById("dismiss-reason");
  if (reason) { reason.focus(); }
}
// A probe's page follows its arrival without reloading.
(function () {
  "use strict";
  var box = document.getElementById("probe-progress");
  if (!box || box.hasAttribute("data-done")) { return; }
  var timer = window.setInterval(function () {
    fetch(box.getAttribute("data-probe"), { credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.text() : Promise.reject(new Error(String(response.status)));
    }).then(function (html) {
      var holder = document.createElement("div");
      holder.innerHTML = html;
      var next = holder.querySelector("#probe-progress");
      box.replaceWith(next);
      box = next;
      if (next.hasAttribute("data-done")) { window.clearInterval(timer); }
    }).catch(function () { window.clearInterval(timer); });
  }, 1000);
})();
// A long list of 文書分類: a box beside it narrows the choices by name or
// code (「契約」, 「A-01」) and picks the first match; choosing a 分類 fills
// its 保存期間 unless the clerk chose one.
document.querySelectorAll("select[data-filterable]").forEach(function (select) {
  var box = document.createElement("input");
  box.type = "search";
  box.className = "filter-box";
  box.setAttribute("aria-label", select.getAttribute("data-filterable"));
  box.setAttribute("placeholder", "名前かコードで絞り込む（例：契約）");
  var found = document.createElement("span");
  found.className = "meta";
  found.setAttribute("aria-live", "polite");
  var picker = document.createElement("span");
  picker.className = "picker";
  select.parentNode.insertBefore(picker, select);
  picker.appendChild(box);
  picker.appendChild(select);
  picker.appendChild(found);
  function plain(text) { return text.normalize("NFKC").toLowerCase(); }
  box.addEventListener("input", function () {
    var words = plain(box.value).trim();
    var first = null, count = 0;
    Array.prototype.forEach.call(select.options, function (option) {
      if (!option.value) { return; }
      var match = !words || plain(option.text).indexOf(words) >= 0;
      option.hidden = !match;
      if (match) { count += 1; first = first || option; }
    });
    found.textContent = words ? (count ? count + "件が該当" : "該当する分類はありません") : "";
    if (words && first && select.value !== first.value) {
      select.value = first.value;
      select.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });
  // Enter takes the choice and goes on to the choices, not the form's submit.
  box.addEventListener("keydown", function (event) {
    if (event.key === "Enter") { event.preventDefault(); select.focus(); }
  });
  var retention = document.getElementById(select.getAttribute("data-retention-field") || "");
  if (!retention) { return; }
  retention.addEventListener("change", function () { retention.removeAttribute("data-auto"); });
  select.addEventListener("change", function () {
    var option = select.options[select.selectedIndex];
    var period = option ? option.getAttribute("data-retention") : "";
    if (period && (!retention.value || retention.hasAttribute("data-auto"))) {
      retention.value = period;
      retention.setAttribute("data-auto", "1");
    }
  });
});
// The mail list with its reading pane: j/k show the next/previous mail
// beside the list, x selects and moves on, e marks 対象外 and moves on,
// o/Enter open the full page, r registers the selection, / searches,
// ? shows the keys. The selection survives opening a mail and paging.
(function () {
  "use strict";
  var SELECTED = "mailintake.selected";
  var REASON = "mailintake.dismissReason";
  var all = document.getElementById("select-all");
  var pick = document.getElementById("pick");
  var pane = document.getElementById("pane");
  var live = document.getElementById("live");
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.list tbody tr[data-id]"));
  if (!pick) { return; }
  var selected = JSON.parse(window.sessionStorage.getItem(SELECTED) || "[]");
  var current = -1;
  var paneReady = Promise.resolve();
  var busy = false;  // a 対象外 on its way: keys wait, so the list does not shift under them

  function say(text) { if (live) { live.textContent = text; } }
  function boxOf(row) { return row.querySelector("input[type=checkbox]"); }
  function linkOf(row) { return row.querySelector("td.subject a"); }
  function saveSelection() {
    window.sessionStorage.setItem(SELECTED, JSON.stringify(selected));
    var count = document.getElementById("selected-count");
    if (count) { count.textContent = selected.length ? "選択中 " + selected.length + "件" : ""; }
  }
  function setSelected(row, on) {
    var box = boxOf(row);
    if (!box || box.disabled) { return; }
    box.checked = on;
    var id = row.getAttribute("data-id");
    selected = selected.filter(function (other) { return other !== id; });
    if (on) { selected.push(id); }
    saveSelection();
  }
  rows.forEach(function (row, index) {
    var box = boxOf(row);
    if (box && !box.disabled && selected.indexOf(row.getAttribute("data-id")) >= 0) { box.checked = true; }
    if (box) { box.addEventListener("change", function () { setSelected(row, box.checked); }); }
    if (row.classList.contains("current")) { current = index; }
    // A click on the row (not on its link or box) shows the mail in the pane.
    row.addEventListener("click", function (event) {
      var tag = (event.target.tagName || "").toLowerCase();
      if (tag !== "a" && tag !== "input") { show(rows.indexOf(row)); }
    });
  });
  saveSelection();
  if (all) {
    all.addEventListener("change", function () {
      rows.forEach(function (row) { setSelected(row, all.checked); });
    });
  }
  // Selected mails of other pages go into the form too, in the order chosen.
  pick.addEventListener("submit", function () {
    var onPage = rows.map(function (row) { return row.getAttribute("data-id"); });
    selected.forEach(function (id) {
      if (onPage.indexOf(id) < 0) {
        var hidden = document.createElement("input");
        hidden.type = "hidden"; hidden.name = "id"; hidden.value = id;
        pick.appendChild(hidden);
      }
    });
    window.sessionStorage.removeItem(SELECTED);
  });

  function show(index) {
    if (index < 0 || index >= rows.length) { return; }
    if (current >= 0 && rows[current]) { rows[current].classList.remove("current"); }
    current = index;
    var row = rows[current];
    row.classList.add("current");
    var link = linkOf(row);
    if (link) { link.focus(); }
    if (!pane || !link) { return; }
    var list = pane.getAttribute("data-list");
    window.history.replaceState(null, "", list + (list.indexOf("?") >= 0 ? "&" : "?") + "open=" + row.getAttribute("data-id"));
    paneReady = fetch(link.getAttribute("data-pane"), { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) { throw new Error(String(response.status)); }
      return response.text();
    }).then(function (html) {
      if (rows[current] !== row) { return; }  // the clerk has moved on
      pane.innerHTML = html;
      pane.hidden = false;
      pane.parentNode.classList.add("with-pane");
      row.classList.remove("unread");
      var mark = row.querySelector(".mark");
      if (mark) { mark.remove(); }
      var form = pane.querySelector("form.dismiss");
      if (form) {
        // The reason last given in this tab is the one e will use: shown, and editable.
        form.querySelector("[name=reason]").value = window.sessionStorage.getItem(REASON) || "";
        form.addEventListener("submit", function (event) { event.preventDefault(); dismiss(form, row); });
      }
    }).catch(function () {
      pane.hidden = false;
      pane.textContent = "このメールを表示できませんでした。Enter で全画面を開いてください。";
    });
  }

  function dismiss(form, row) {
    var reason = form.querySelector("[name=reason]");
    if (!reason.value) {
      reason.value = window.sessionStorage.getItem(REASON) || "";
      if (!reason.value) { reason.focus(); say("対象外の理由を入力して Enter を押してください。"); return; }
    }
    window.sessionStorage.setItem(REASON, reason.value);
    busy = true;
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin", redirect: "manual" })
      .then(function (response) {
        if (response.type !== "opaqueredirect" && !response.ok) { throw new Error(String(response.status)); }
        var subject = linkOf(row).textContent;
        var index = rows.indexOf(row);
        setSelected(row, false);
        if (document.querySelector("select[name=status]").value === "new") {
          row.remove();
          rows.splice(index, 1);
          current = -1;
        } else {
          row.querySelector(".badge").textContent = "対象外";
          boxOf(row).disabled = true;
        }
        say("対象外にしました（理由：" + reason.value + "）：" + subject);
        if (rows.length) { show(Math.min(index + (current === -1 ? 0 : 1), rows.length - 1)); }
        else { pane.hidden = true; }
      })
      .catch(function () { say("対象外にできませんでした。ページを開き直してからもう一度お試しください。"); })
      .then(function () { busy = false; });
  }

  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea" || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (busy) { event.preventDefault(); return; }
    var row = current >= 0 ? rows[current] : null;
    if (event.key === "j") { show(current + 1); event.preventDefault(); }
    else if (event.key === "k") { show(Math.max(current - 1, 0)); event.preventDefault(); }
    else if (event.key === "x" && row) {
      var box = boxOf(row);
      if (box && !box.disabled) { setSelected(row, !box.checked); }
      show(current + 1);
      event.preventDefault();
    } else if (event.key === "o" && row) {
      window.location = linkOf(row).href;
    } else if (event.key === "e" && row) {
      if (!pane) { window.location = linkOf(row).href + "#dismiss"; return; }
      if (!pane.querySelector("form.dismiss") || pane.hidden) { show(current); }
      paneReady.then(function () {
        var form = pane.querySelector("form.dismiss");
        if (rows[current] === row && form) { dismiss(form, row); }
      });
      event.preventDefault();
    } else if (event.key === "r") {
      if (selected.length) { pick.requestSubmit(); }
      event.preventDefault();
    } else if (event.key === "/") {
      var search = document.querySelector("input[name=q]");
      if (search) { search.focus(); search.select(); }
      event.preventDefault();
    } else if (event.key === "?") {
      var keys = document.getElementById("keys");
      if (keys) { keys.hidden = !keys.hidden; }
      event.preventDefault();
    }
  });
})();
