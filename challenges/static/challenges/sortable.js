// Sort a table by any column on a click on its header (Scanbench's own code, no dependency).
// Numbers sort as numbers (the first number in the cell), "—" and empty cells always last;
// a second click on the same header reverses the order. Keyboard: headers are buttons.
(function () {
  function key(cell) {
    var text = (cell ? cell.innerText : "").trim();
    var m = text.match(/^-?\d+(\.\d+)?(e-?\d+)?/i);
    return { empty: text === "" || text === "—", num: m ? parseFloat(m[0]) : null, text: text };
  }
  document.querySelectorAll("table[data-sortable]").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.innerHTML = th.innerHTML;
      th.innerHTML = "";
      th.appendChild(button);
      th.setAttribute("aria-sort", "none");
      button.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (x.empty !== y.empty) return x.empty ? 1 : -1;
          var d = (x.num !== null && y.num !== null) ? x.num - y.num : x.text.localeCompare(y.text);
          return asc ? d : -d;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
