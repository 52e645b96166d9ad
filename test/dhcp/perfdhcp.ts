// Reads perfdhcp's (Kea 2.2) text report.
export interface PerfdhcpStats {
  discovers: number
  offers: number
  requests: number
  acks: number
  /** 4-way exchanges per second, as perfdhcp reports it. */
  rate: number
}

export function perfdhcpStats(out: string): PerfdhcpStats {
  const section = (name: string) => out.split(`***Statistics for: ${name}***`)[1] ?? ''
  const num = (text: string, label: string) => Number(new RegExp(`${label}: (\\d+)`).exec(text)?.[1] ?? 0)
  const d = section('DISCOVER-OFFER')
  const r = section('REQUEST-ACK')
  return {
    discovers: num(d, 'sent packets'),
    offers: num(d, 'received packets'),
    requests: num(r, 'sent packets'),
    acks: num(r, 'received packets'),
    rate: Number(/Rate: ([\d.]+) 4-way exchanges\/second/.exec(out)?.[1] ?? 0),
  }
}
