// Building DOM nodes without innerHTML. Everything that comes from the API
// or the user goes in through textContent or setAttribute, so nothing is
// ever parsed as HTML (and the CSP needs no inline anything).

/**
 * el creates an element. attrs: "class", "text" (textContent), "on<event>"
 * (a listener function), "dataset" (an object), any other attribute
 * (false/null/undefined leave it out, true sets it empty). Children are
 * nodes or strings (strings become text nodes); arrays are flattened.
 */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = String(v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) {
      if (typeof v !== "function") throw new TypeError(`el: ${k} must be a function`);
      e.addEventListener(k.slice(2), v);
    } else e.setAttribute(k, v === true ? "" : String(v));
  }
  append(e, children);
  return e;
}

/** append adds children (nodes, strings, nested arrays) to parent. */
export function append(parent, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** $ returns the element with this id (throws when missing: a typo). */
export function $(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`console: no element #${id}`);
  return e;
}

/** show sets an element's hidden attribute from a boolean. */
export function show(e, visible) {
  e.hidden = !visible;
}
