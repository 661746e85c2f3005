// Node socket.io with rooms: the choice most users would make instead.
// `join` enters the room it names (scenario E's many small rooms; without a name the one room
// `bench`) and answers `joined`; `bcast` goes to the sender's room but the sender
// (socket.to(room).emit); `echo` back to its sender.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[process.argv.indexOf('--port') + 1]);
const ROOM = 'bench';
const srv = http.createServer();
const io = new Server(srv, { perMessageDeflate: false });

io.on('connection', (s) => {
  s.on('join', (room) => {
    s.data.room = typeof room === 'string' ? room : ROOM;
    s.join(s.data.room);
    s.emit('joined', null);
  });
  s.on('bcast', (d) => s.to(s.data.room).emit('bcast', d));
  s.on('echo', (d) => s.emit('echo', d));
});

srv.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${srv.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
