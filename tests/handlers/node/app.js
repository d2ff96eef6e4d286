// Test handlers for the node runtime (tests/integration/test_*.c, `code: @HANDLERS@/node`).
//
// Ordinary Lambda handlers (CommonJS, async), no dependencies, none of them reads `context`, so
// they test the runtime's event and response path and nothing else.
'use strict';

class HandlerError extends Error {
  constructor(message) {
    super(message);
    this.name = 'HandlerError';
  }
}

// Return the event unchanged.
exports.echo = async (event) => event;

// {"env": {...}}: the whole process environment, for the tests of what a function sees.
exports.env = async () => ({ env: { ...process.env } });

// {"pid": N}: the environment's process id, for warm reuse and process-lifetime checks.
exports.pid = async () => ({ pid: process.pid });

// Print event.message on stdout and stderr (one line each), then return it.
exports.log = async (event) => {
  const message = String((event && event.message) || 'hello from app.log');
  console.log(message);
  console.error(`stderr: ${message}`);
  return { logged: message };
};

// Sleep event.seconds (default 0), then return {"pid": N, "slept": seconds}.
exports.sleep = async (event) => {
  const seconds = Number((event && event.seconds) || 0);
  if (seconds > 0) await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return { pid: process.pid, slept: seconds };
};

// The runtime process exits mid-invocation (exit status 1, no response posted): the broker must
// report Runtime.ExitError.
exports.crash = async () => {
  console.log('crashing on purpose');
  process.exit(1);
};

function fail(message) {
  throw new HandlerError(message);
}

// Throw HandlerError(event.message) one call deep: the runtime reports it with its stack trace.
exports.raise_error = async (event) => {
  fail(event && event.message !== undefined ? String(event.message) : 'boom');
};
