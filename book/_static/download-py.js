// Each chapter's download menu offers its notebook (.ipynb) and, beside it, the same chapter as a
// jupytext percent-format script (.py), which the book runner copies next to the notebook.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("a.btn-download-source-button").forEach(function (link) {
    var href = link.getAttribute("href") || "";
    if (!href.endsWith(".ipynb")) return;
    var item = link.closest("li");
    if (!item) return;
    var copy = item.cloneNode(true);
    var a = copy.querySelector("a");
    a.setAttribute("href", href.slice(0, -".ipynb".length) + ".py");
    a.setAttribute("title", "Download the chapter as a .py script");
    var text = copy.querySelector(".btn__text-container");
    if (text) text.textContent = ".py";
    item.parentNode.insertBefore(copy, item.nextSibling);
  });
});
