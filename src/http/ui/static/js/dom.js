// Building DOM from data without ever parsing it as HTML: every string becomes a text node or an attribute value,
// so a machine named `<img onerror=…>` shows as those characters. The UI never parses a string as HTML. Text and
// the attributes people read (title, aria-label) also show control characters (visible()): ESC reads as ␛.
import { dateTime, machineLabel, timeTitle, visible } from './format.js'

/** Attributes whose value is shown to people (tooltips, screen readers), so made visible like text. */
const READ_ATTRIBUTES = new Set(['title', 'aria-label', 'placeholder', 'alt'])

/**
 * h('a', { href: '#/', class: 'x', onclick: fn }, 'text', child, [more]) → an element.
 * Props: `class`, `text`, `dataset` ({k: v}), `on<event>` (listener), booleans as present/absent attributes,
 * anything else as an attribute; null, undefined and false are skipped.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag)
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue
    if (key === 'class') el.className = value
    else if (key === 'text') el.textContent = visible(value)
    else if (key === 'dataset') Object.assign(el.dataset, value)
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value)
    else if (value === true) el.setAttribute(key, '')
    else el.setAttribute(key, READ_ATTRIBUTES.has(key) ? visible(value) : String(value))
  }
  append(el, children)
  return el
}

/** Appends children: nodes as they are, arrays flattened, anything else as (visible) text; null/undefined/false skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue
    el.append(child instanceof Node ? child : document.createTextNode(visible(child)))
  }
  return el
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren()
  return append(el, children)
}

/** Plays the change highlight on an element (restarting it when it is already playing). */
export function flash(el) {
  el.classList.remove('flash')
  void el.offsetWidth // restart the CSS animation
  el.classList.add('flash')
}

/** A machine's page link target. */
export function machineHref(id) {
  return `#/machines/${encodeURIComponent(id)}`
}

/** A time as the UI shows every time (format.js dateTime), with milliseconds and zone name as its tooltip. */
export function timeEl(iso, props = {}) {
  if (!iso) return h('span', { class: 'muted' }, '—')
  return h('time', { datetime: iso, title: timeTitle(iso), ...props }, dateTime(iso))
}

/**
 * A machine as a tech recognises it (format.js machineLabel): its name, else its serial, MAC or a short id marked as
 * not a name; the id in the tooltip. `link`: an <a> to its page.
 */
export function machineNameEl(m, { link = false } = {}) {
  const l = machineLabel(m)
  const title = l.named ? `${m.name} (${m.id})` : `No name: ${l.by === 'id' ? 'id' : l.by} ${l.by === 'id' ? m.id : `${l.text} (${m.id})`}`
  const props = { class: l.named ? 'mname' : `mname unnamed by-${l.by.toLowerCase()}`, title, dataset: { by: l.by } }
  return link ? h('a', { ...props, href: machineHref(m.id) }, l.text) : h('span', props, l.text)
}
