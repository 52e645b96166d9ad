// A machine's boot timeline: every event in order with its time, phase and the time since the step before, the
// newest boot's progress (DHCP → … → install) and, when it failed, where it stopped, in red, with the message (a
// boot.failure as "Failed in phase X: reason").
import { flash, h, replace, timeEl } from './dom.js'
import { duration } from './format.js'
import { bootProgress, classify, failureText, phaseLabel } from './phases.js'

const STATUS_TEXT = { ok: 'done', fail: 'failed', warn: 'warning', progress: 'in progress', info: '' }

/**
 * createTimeline({ limit, onChange(events) }) → { el, set(events), add(event), setState(state), events(), lastSeq() };
 * `add` ignores events already shown; `setState` is the machine's state (a failed machine's progress stops at the
 * failure that quarantined it).
 */
export function createTimeline({ limit = 500, onChange = () => {} } = {}) {
  let events = []
  let state = null
  const progressEl = h('ol', { class: 'progress', 'aria-label': 'Newest boot, step by step' })
  const summaryEl = h('div', { class: 'boot-summary', role: 'status' })
  const tbody = h('tbody')
  const note = h('p', { class: 'muted small' })
  const el = h('div', { class: 'timeline-wrap' },
    progressEl, summaryEl,
    h('div', { class: 'table-wrap' }, h('table', { class: 'timeline' },
      h('caption', { class: 'visually-hidden' }, 'Boot timeline, oldest first'),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'Time'), h('th', { scope: 'col' }, 'After'), h('th', { scope: 'col' }, 'Phase'), h('th', { scope: 'col' }, 'Event'))),
      tbody)),
    note)

  function row(e, i, progress) {
    const c = classify(e)
    const prev = events[i - 1]
    const delta = prev ? Date.parse(e.at) - Date.parse(prev.at) : null
    const stoppedHere = progress.failed && progress.failed.seq === e.seq
    const tr = h('tr', { class: `ev ev-${c.status}${stoppedHere ? ' stopped' : ''}${i === progress.start ? ' attempt-start' : ''}`, dataset: { seq: e.seq, type: e.type } },
      h('td', { class: 'mono nowrap' }, timeEl(e.at)),
      h('td', { class: 'mono nowrap delta' }, delta === null ? '' : `+${duration(delta)}`),
      h('td', { class: 'nowrap' }, h('span', { class: `phase phase-${c.status}` }, c.label ?? e.type),
        c.tag ? h('span', { class: 'tag-fail' }, ` ${c.tag}`) : null),
      h('td', { class: 'msg' }, stoppedHere ? h('strong', { class: 'stopped-label' }, 'Stopped here: ') : null, e.message))
    return tr
  }

  function renderProgress(progress) {
    replace(progressEl, progress.path.map((key) => {
      const step = progress.steps[key]
      const status = step ? step.status : 'pending'
      const isLast = progress.last?.phase === key
      return h('li', { class: `step step-${status}${isLast ? ' current' : ''}`, dataset: { phase: key }, title: step ? step.event.message : 'not reached' },
        h('span', { class: 'step-label' }, phaseLabel(key)),
        h('span', { class: 'step-status' }, step ? STATUS_TEXT[status] || 'done' : 'not reached'))
    }))
    if (progress.start < 0) {
      summaryEl.className = 'boot-summary'
      replace(summaryEl, 'No boot recorded yet: the machine has not network-booted since it was added.')
    } else if (progress.failed?.type === 'boot.failure') {
      const f = progress.failed
      summaryEl.className = 'boot-summary fail'
      replace(summaryEl, h('strong', null, failureText(f)), ' (', timeEl(f.at), ')',
        state === 'failed' ? '. Quarantined: see Failures above to retry or replace it.' : '')
    } else if (progress.failed) {
      const f = progress.failed
      summaryEl.className = 'boot-summary fail'
      replace(summaryEl, h('strong', null, `Boot stopped at ${phaseLabel(progress.last?.phase)}`), ' (', timeEl(f.at), '): ', f.message)
    } else if (progress.waiting) {
      const w = progress.waiting
      summaryEl.className = 'boot-summary'
      replace(summaryEl, h('strong', null, 'Waiting for the machine to boot'), ' since ', timeEl(w.at), ': ', w.message)
    } else if (progress.last) {
      const l = progress.last
      summaryEl.className = 'boot-summary ok'
      replace(summaryEl, h('strong', null, `Last step reached: ${phaseLabel(l.phase)}`), ' (', timeEl(l.event.at), '): ', l.event.message)
    }
  }

  function render() {
    const progress = bootProgress(events, { state })
    renderProgress(progress)
    replace(tbody, events.map((e, i) => row(e, i, progress)))
    note.textContent = events.length >= limit ? `Showing the newest ${limit} events.` : `${events.length} event${events.length === 1 ? '' : 's'}.`
    onChange(events)
    return progress
  }

  return {
    el,
    set(list) {
      events = [...list].sort((a, b) => a.seq - b.seq)
      render()
    },
    add(e) {
      if (events.some((x) => x.seq === e.seq)) return false
      events.push(e)
      events.sort((a, b) => a.seq - b.seq)
      if (events.length > limit) events = events.slice(-limit)
      render()
      const tr = tbody.querySelector(`tr[data-seq="${e.seq}"]`)
      if (tr) flash(tr)
      return true
    },
    setState(next) {
      if (next === state) return
      state = next
      render()
    },
    events: () => events,
    lastSeq: () => events.at(-1)?.seq ?? 0,
  }
}
