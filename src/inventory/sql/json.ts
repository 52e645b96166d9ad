// JSON columns: parse defensively so one bad row cannot take a whole list down.
export function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null || text === '') return fallback
  try {
    return JSON.parse(text) as T
  } catch {
    return fallback
  }
}
