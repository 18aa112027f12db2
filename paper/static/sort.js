// Click a column header of a sortable table to sort its rows by that column: numbers by value, before any
// text ("not run", "–"); a second click reverses the order.
document.querySelectorAll("table.sortable").forEach(table => {
  const headers = [...table.querySelectorAll("thead th")];
  headers.forEach((header, column) => {
    header.title = "sort by this column";
    header.addEventListener("click", () => {
      const ascending = header.dataset.order !== "ascending";
      headers.forEach(h => delete h.dataset.order);
      header.dataset.order = ascending ? "ascending" : "descending";
      const key = row => {
        const text = row.cells[column].textContent.trim();
        const number = parseFloat(text);
        return isNaN(number) ? text : number;
      };
      const body = table.tBodies[0];
      const rows = [...body.rows].sort((a, b) => {
        const x = key(a), y = key(b);
        if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      body.append(...rows);
    });
  });
});
