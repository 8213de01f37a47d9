// Click a column header of a table.sortable to sort its rows (numbers before text; again to reverse).
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], col = th.cellIndex;
  const dir = th.dataset.dir = th.dataset.dir === "asc" ? "desc" : "asc";
  const key = tr => { const t = tr.cells[col].textContent.replace("\u2212", "-"), x = parseFloat(t);
                      return isNaN(x) ? t : x; };
  const cmp = (a, b) => typeof a === typeof b ? (a < b ? -1 : a > b ? 1 : 0) : (typeof a === "number" ? -1 : 1);
  [...body.rows].sort((a, b) => (dir === "asc" ? 1 : -1) * cmp(key(a), key(b))).forEach(tr => body.appendChild(tr));
}));
