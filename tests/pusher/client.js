// Pusher's official JavaScript client (npm pusher-js, unmodified, installed
// by scripts/test) against a bullhorn node, for tests/pusher_clients.rs.
//
// Usage: node client.js HOST PORT KEY CHANNEL[,CHANNEL...]
// Prints one JSON object per line for what the library reports: connection
// states, subscriptions (and their errors), every event on a channel, pongs,
// errors. Reads commands from stdin, one per line: `subscribe NAME`,
// `unsubscribe NAME`, `quit`. ACTIVITY_MS (optional) is the library's
// activityTimeout: silent that long, it sends `pusher:ping`.
'use strict';
const Pusher = require('pusher-js');
const readline = require('node:readline');

const [host, port, key, channels] = process.argv.slice(2);
const print = (line) => process.stdout.write(JSON.stringify(line) + '\n');

const pusher = new Pusher(key, {
  cluster: 'mt1',
  wsHost: host,
  wsPort: Number(port),
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  activityTimeout: Number(process.env.ACTIVITY_MS || 120000),
  // A private channel needs an authorization; this one is made up, so the
  // subscribe reaches the server, which must refuse it itself.
  channelAuthorization: {
    customHandler: (params, callback) => callback(null, { auth: key + ':0000' }),
  },
});

pusher.connection.bind('state_change', (states) => print({ state: states.current }));
pusher.connection.bind('connected', () => print({ connected: pusher.connection.socket_id }));
pusher.connection.bind('error', (error) => print({ error: error.type || 'error', data: error.data || null }));
pusher.connection.bind('message', (message) => {
  if (message.event === 'pusher:pong') print({ pong: true });
});

function subscribe(name) {
  const channel = pusher.subscribe(name);
  channel.bind('pusher:subscription_succeeded', () => print({ subscribed: name }));
  channel.bind('pusher:subscription_error', (error) =>
    print({ subscription_error: name, status: error.status, type: error.type }),
  );
  channel.bind_global((event, data) => {
    if (!event.startsWith('pusher:')) print({ channel: name, event, data });
  });
}

for (const name of channels.split(',').filter(Boolean)) subscribe(name);

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, name] = line.trim().split(/\s+/);
  if (command === 'subscribe') subscribe(name);
  else if (command === 'unsubscribe') {
    pusher.unsubscribe(name);
    print({ unsubscribed: name });
  } else if (command === 'quit') {
    pusher.disconnect();
    process.exit(0);
  }
});
