import type { Server } from 'node:http'
import type { Socket } from 'node:net'

// GRUB 2.06 half-closes its HTTP connection with a zero receive window, so the FIN of a normal close can never be
// sent and the server's socket lingers; GRUB then reuses the same source port on the next boot, meets that stale
// socket, and fails to fetch its initrd (lab.md: 4 of 6 arm64 boots). So when a client ends its side with no
// request in flight, the connection is reset (RST) instead of closed: whatever it asked for it has received (its
// FIN carries the acknowledgement of it), and nothing of ours can linger. With a request in flight Node's own
// handling stands (it aborts the request and closes normally).

export function resetOnPeerEof(server: Server): void {
  const inFlight = new WeakMap<Socket, number>()
  server.on('request', (req, res) => {
    const socket = req.socket
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1)
    res.once('close', () => inFlight.set(socket, (inFlight.get(socket) ?? 1) - 1))
  })
  server.on('connection', (socket: Socket) => {
    // Before Node's own end handler, which would queue the FIN this replaces.
    socket.prependOnceListener('end', () => {
      if ((inFlight.get(socket) ?? 0) === 0 && socket.writableLength === 0 && !socket.destroyed) socket.resetAndDestroy()
    })
  })
}
