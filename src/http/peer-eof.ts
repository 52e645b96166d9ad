import type { Server } from 'node:http'
import type { Socket } from 'node:net'

// GRUB 2.06 opens every boot's connections from the same source ports (21550, 21551, ...) with sequence numbers
// taken from its millisecond clock, so a server socket still closing from the previous boot (FIN-WAIT-2, LAST-ACK,
// TIME-WAIT: up to 60 s) meets the next boot's SYN, answers it with a bare ACK, and GRUB retries for 16 s and gives
// up ("grub>", or no initrd: lab.md). Two ways such sockets were left behind, both closed here by reset (RST), which
// leaves nothing in the kernel:
// - GRUB half-closes with a zero receive window, so the FIN of a normal close can never be sent. When a client ends
//   its side with no request in flight, whatever it asked for it has received (its FIN acknowledges it).
// - GRUB keeps a config file's connection open and never closes it; at the keep-alive timeout Node's FIN is
//   acknowledged and the socket waits 60 s in FIN-WAIT-2 for a FIN that never comes. An idle keep-alive connection
//   has no response in flight, so resetting it loses nothing (a request racing the close is lost either way).
// With a request in flight Node's own handling stands (it aborts the request and closes normally).

export function resetOnPeerEof(server: Server): void {
  const inFlight = new WeakMap<Socket, number>()
  server.on('request', (req, res) => {
    const socket = req.socket
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1)
    res.once('close', () => inFlight.set(socket, (inFlight.get(socket) ?? 1) - 1))
  })
  const idle = (socket: Socket): boolean => (inFlight.get(socket) ?? 0) === 0 && socket.writableLength === 0 && !socket.destroyed
  server.on('connection', (socket: Socket) => {
    // Before Node's own handlers, which would queue the FIN this replaces.
    socket.prependOnceListener('end', () => {
      if (idle(socket)) socket.resetAndDestroy()
    })
    // Node arms the socket's timeout with keepAliveTimeout once a response is done; a connection with no request
    // yet is cut by headersTimeout, not here.
    socket.prependListener('timeout', () => {
      if (idle(socket) && inFlight.has(socket)) socket.resetAndDestroy()
    })
  })
}
