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
// The mail list: j/k move between rows, x selects, Enter/o opens, e opens
// to mark 対象外, r registers the selection, / searches, ? shows the keys.
(function () {
  "use strict";
  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll('table.list tbody input[type=checkbox]:not(:disabled)').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.list tbody tr[data-id]"));
  if (!rows.length) { return; }
  var current = -1;
  function focusRow(index) {
    if (index < 0 || index >= rows.length) { return; }
    if (current >= 0) { rows[current].classList.remove("current"); }
    current = index;
    rows[current].classList.add("current");
    var link = rows[current].querySelector("td.subject a");
    if (link) { link.focus(); }
  }
  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea" || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.key === "j") { focusRow(current + 1); event.preventDefault(); }
    else if (event.key === "k") { focusRow(Math.max(current - 1, 0)); event.preventDefault(); }
    else if (event.key === "x" && current >= 0) {
      var box = rows[current].querySelector("input[type=checkbox]");
      if (box && !box.disabled) { box.checked = !box.checked; }
      event.preventDefault();
    } else if (event.key === "o" && current >= 0) {
      var link = rows[current].querySelector("td.subject a");
      if (link) { window.location = link.href; }
    } else if (event.key === "e" && current >= 0) {
      var open = rows[current].querySelector("td.subject a");
      if (open) { window.location = open.href + "#dismiss"; }
    } else if (event.key === "r") {
      var pick = document.getElementById("pick");
      if (pick && pick.querySelector("input[name=id]:checked")) { pick.submit(); }
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
