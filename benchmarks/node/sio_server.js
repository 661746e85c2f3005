// Node socket.io with rooms: the choice most users would make instead.
// One room; `join` enters it and answers `joined`; `bcast` goes to the room but its sender
// (socket.to(room).emit); `echo` back to its sender.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[process.argv.indexOf('--port') + 1]);
const ROOM = 'bench';
const srv = http.createServer();
const io = new Server(srv, { perMessageDeflate: false });

io.on('connection', (s) => {
  s.on('join', () => {
    s.join(ROOM);
    s.emit('joined', null);
  });
  s.on('bcast', (d) => s.to(ROOM).emit('bcast', d));
  s.on('echo', (d) => s.emit('echo', d));
});

srv.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${srv.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
