'use strict';
/*
 * switchyard Node.js runtime: the AWS Lambda Runtime API client loop for Node handlers.
 *
 * Started by the broker (dispatcher/env.c) as `node runtimes/node/bootstrap.js` with the working
 * directory set to the function's code directory and the Lambda environment variables set
 * (_HANDLER, LAMBDA_TASK_ROOT, AWS_LAMBDA_RUNTIME_API, AWS_LAMBDA_FUNCTION_NAME, ...).
 *
 * Node core modules only. Behaviour follows AWS's Node.js runtime interface client:
 *  - handler `file.export` (also `dir/file.export` and nested `file.obj.fn`); the module is
 *    LAMBDA_TASK_ROOT/file (extensionless), .js (CommonJS, or ESM under "type": "module"),
 *    .cjs, .mjs (ESM via dynamic import()), then Node's own resolution (directory, index.js);
 *  - INIT failures go to /runtime/init/error (Runtime.ImportModuleError,
 *    Runtime.UserCodeSyntaxError, Runtime.HandlerNotFound, Runtime.MalformedHandlerName, or the
 *    error's name for anything else the module threw) and the process exits with status 1;
 *  - handlers may return a promise (async) or use callback(err, result) / context.done /
 *    context.succeed / context.fail; a handler that does neither completes with null once the
 *    event loop is empty (like Lambda);
 *  - errors are posted as {errorType, errorMessage, trace} (Lambda's Node shape);
 *  - an uncaught exception or unhandled rejection during an invoke is reported as that
 *    invoke's error and the process exits with status 1 (the broker starts a fresh one).
 */

const http = require('http');
const fs = require('fs');
const path = require('path');
const url = require('url');
const util = require('util');

const API_PREFIX = '/2018-06-01/runtime';

/* ---- Runtime API client ------------------------------------------------------------------- */

function parseAddress(addr) {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(addr || '');
  if (!m) return { host: addr || '127.0.0.1', port: 9001 };
  return { host: m[1] || '127.0.0.1', port: Number(m[2]) };
}

const address = process.env.AWS_LAMBDA_RUNTIME_API;
const { host, port } = parseAddress(address);
/* One kept-alive connection; an idle kept-alive socket is unref'd by the agent, so it does not
 * keep the event loop alive while a handler runs (needed for the empty-event-loop rule). */
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, p, body, headers) {
  return new Promise((resolve, reject) => {
    const hdrs = Object.assign({}, headers || {});
    let data = null;
    if (body !== undefined && body !== null) {
      data = Buffer.isBuffer(body) ? body : Buffer.from(String(body), 'utf8');
      hdrs['Content-Length'] = data.length;
    }
    const req = http.request({ host, port, method, path: p, headers: hdrs, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    if (data) req.end(data);
    else req.end();
  });
}

/* Retry once on a fresh connection when the kept-alive one turned out to be dead. */
async function apiRequest(method, p, body, headers) {
  try {
    return await request(method, p, body, headers);
  } catch (e) {
    if (e && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
      return request(method, p, body, headers);
    }
    throw e;
  }
}

function postError(requestId, errObj, typeHeader) {
  return apiRequest('POST', `${API_PREFIX}/invocation/${requestId}/error`, safeStringify(errObj), {
    'Content-Type': 'application/json',
    'Lambda-Runtime-Function-Error-Type': typeHeader || 'Unhandled',
  });
}

function postInitError(errObj) {
  return apiRequest('POST', `${API_PREFIX}/init/error`, safeStringify(errObj), {
    'Content-Type': 'application/json',
    'Lambda-Runtime-Function-Error-Type': errObj.errorType,
  });
}

function postResponse(requestId, body) {
  return apiRequest('POST', `${API_PREFIX}/invocation/${requestId}/response`, body, {
    'Content-Type': 'application/json',
  });
}

/* ---- errors ------------------------------------------------------------------------------- */

class RuntimeFault extends Error {
  constructor(type, message, cause) {
    super(message);
    this.name = type;
    if (cause && typeof cause.stack === 'string') {
      this.stack = `${type}: ${message}\n` + cause.stack.split('\n').slice(1).join('\n');
    }
  }
}

function safeStringify(v) {
  try {
    return JSON.stringify(v);
  } catch (_e) {
    return JSON.stringify({ errorType: 'Runtime.Unknown', errorMessage: String(v && v.errorMessage) });
  }
}

function isErrorLike(e) {
  return (
    util.types.isNativeError(e) ||
    e instanceof Error ||
    (e !== null && typeof e === 'object' && typeof e.message === 'string' && typeof e.name === 'string')
  );
}

/* Stack lines up to (not including) the first frame of this runtime: below it is only the
 * runtime's own call chain. */
function userTrace(stack) {
  const lines = stack.split('\n');
  const cut = lines.findIndex((l, i) => i > 0 && l.includes(__filename));
  return cut > 0 ? lines.slice(0, cut) : lines;
}

/* Lambda's error object for a thrown/rejected/callback'd value. */
function toRapidResponse(err) {
  try {
    if (isErrorLike(err)) {
      const stack = typeof err.stack === 'string' ? err.stack : `${err.name}: ${err.message}`;
      return {
        errorType: String(err.name || 'Error'),
        errorMessage: String(err.message === undefined ? '' : err.message),
        trace: userTrace(stack),
      };
    }
    let message;
    if (typeof err === 'string') message = err;
    else if (err !== null && typeof err === 'object') {
      try {
        message = JSON.stringify(err);
      } catch (_e) {
        message = util.inspect(err);
      }
      if (message === undefined) message = String(err);
    } else message = String(err);
    return { errorType: typeof err, errorMessage: message, trace: [] };
  } catch (_e) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or ' +
        'more of its message, name, and stack',
      trace: [],
    };
  }
}

function logError(label, errObj) {
  const printable = { errorType: errObj.errorType, errorMessage: errObj.errorMessage, stack: errObj.trace };
  try {
    process.stderr.write(`ERROR\t${label} \t${safeStringify(printable)}\n`);
  } catch (_e) {
    /* stderr gone: nothing to do */
  }
}

function fatal(msg) {
  try {
    process.stderr.write(`ERROR\tswitchyard node runtime: ${msg}\n`);
  } finally {
    process.exit(1);
  }
}

/* ---- handler loading ---------------------------------------------------------------------- */

function hasPackageTypeModule(file) {
  let dir = path.dirname(file);
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch (_e) {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (_e) {
    return false;
  }
}

function importFile(file) {
  return import(url.pathToFileURL(file).href);
}

async function requireOrImport(file) {
  try {
    return require(file);
  } catch (e) {
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
      return importFile(file);
    }
    throw e;
  }
}

async function loadModule(base) {
  if (isFile(base)) return require(base); // extensionless file
  if (isFile(base + '.js')) {
    if (hasPackageTypeModule(base + '.js')) return importFile(base + '.js');
    return requireOrImport(base + '.js');
  }
  if (isFile(base + '.cjs')) return require(base + '.cjs');
  if (isFile(base + '.mjs')) return importFile(base + '.mjs');
  return require(base); // directory with index.js / package.json "main", .json, .node
}

function splitHandler(full) {
  const handlerPart = path.basename(full);
  const moduleRoot = full.substring(0, full.length - handlerPart.length);
  const m = /^([^.]*)\.(.*)$/.exec(handlerPart);
  if (!m || !m[1] || !m[2]) {
    throw new RuntimeFault('Runtime.MalformedHandlerName', `Bad handler ${full}`);
  }
  return { moduleRoot, moduleName: m[1], fnPath: m[2] };
}

async function loadHandler(root, full) {
  const { moduleRoot, moduleName, fnPath } = splitHandler(full);
  const base = path.resolve(root, moduleRoot, moduleName);
  let mod;
  try {
    mod = await loadModule(base);
  } catch (e) {
    if (e instanceof SyntaxError) {
      throw new RuntimeFault('Runtime.UserCodeSyntaxError', `${e.name}: ${e.message}`, e);
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new RuntimeFault('Runtime.ImportModuleError', `Error: ${e.message}`, e);
    }
    throw e;
  }
  const fn = fnPath.split('.').reduce((obj, key) => (obj === undefined || obj === null ? undefined : obj[key]), mod);
  if (fn === undefined || fn === null) {
    throw new RuntimeFault('Runtime.HandlerNotFound', `${full} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw new RuntimeFault('Runtime.HandlerNotFound', `${full} is not a function`);
  }
  return fn;
}

/* ---- invocation --------------------------------------------------------------------------- */

let phase = 'init'; // 'init' | 'idle' | 'invoke'
let current = null; // { id, finish(err, value), done }

function parseJsonHeader(v) {
  if (!v) return undefined;
  try {
    return JSON.parse(v);
  } catch (_e) {
    return undefined;
  }
}

function makeContext(headers, finish) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']) || Date.now() + 900000;
  const ctx = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    identity: parseJsonHeader(headers['lambda-runtime-cognito-identity']),
    clientContext: parseJsonHeader(headers['lambda-runtime-client-context']),
    getRemainingTimeInMillis() {
      return Math.max(deadline - Date.now(), 0);
    },
  };
  /* Legacy completion API (not enumerable, as in Lambda). */
  Object.defineProperties(ctx, {
    done: { value: (err, result) => finish(err, result), enumerable: false, writable: true },
    succeed: { value: (result) => finish(null, result), enumerable: false, writable: true },
    fail: {
      value: (err) => finish(err === undefined || err === null ? 'handled' : err),
      enumerable: false,
      writable: true,
    },
  });
  return ctx;
}

/* Run the handler; resolves { error } or { result } once, whichever way it completes. */
function runHandler(handler, event, headers) {
  return new Promise((resolve) => {
    const inv = {
      id: headers['lambda-runtime-aws-request-id'],
      done: false,
      finish(err, value) {
        if (inv.done) return;
        inv.done = true;
        if (err !== undefined && err !== null) resolve({ error: err });
        else resolve({ result: value });
      },
    };
    current = inv;
    const context = makeContext(headers, inv.finish);
    const callback = (err, value) => inv.finish(err, value);
    let ret;
    try {
      ret = handler(event, context, callback);
    } catch (e) {
      inv.finish(e === undefined || e === null ? 'handled' : e);
      return;
    }
    if (ret !== null && (typeof ret === 'object' || typeof ret === 'function') && typeof ret.then === 'function') {
      Promise.resolve(ret).then(
        (v) => inv.finish(null, v),
        (e) => inv.finish(e === undefined || e === null ? 'handled' : e),
      );
    }
    /* Otherwise: completed by callback/context.*, or with null when the event loop is empty. */
  });
}

process.on('beforeExit', () => {
  if (current && !current.done) current.finish(null, null);
});

async function reportFatal(label, errObj) {
  logError(label, errObj);
  try {
    if (phase === 'invoke' && current) {
      const inv = current;
      inv.done = true;
      await postError(inv.id, errObj, errObj.errorType.startsWith('Runtime.') ? errObj.errorType : 'Unhandled');
    } else if (phase === 'init') {
      await postInitError(errObj);
    }
  } catch (_e) {
    /* the broker reports the exit instead */
  }
  process.exit(1);
}

let dying = false;
process.on('uncaughtException', (err) => {
  if (dying) return;
  dying = true;
  reportFatal('Uncaught Exception', toRapidResponse(err));
});

process.on('unhandledRejection', (reason) => {
  if (dying) return;
  dying = true;
  const errObj = toRapidResponse(reason);
  errObj.errorType = 'Runtime.UnhandledPromiseRejection';
  errObj.errorMessage = isErrorLike(reason) ? `${reason.name}: ${reason.message}` : String(errObj.errorMessage);
  reportFatal('Unhandled Promise Rejection', errObj);
});

async function invokeOnce(handler) {
  phase = 'idle';
  current = null;
  const next = await apiRequest('GET', `${API_PREFIX}/invocation/next`);
  if (next.status !== 200) {
    fatal(`GET invocation/next answered ${next.status}: ${next.body.toString('utf8', 0, 200)}`);
  }
  const headers = next.headers;
  const id = headers['lambda-runtime-aws-request-id'];
  if (!id) fatal('invocation/next response without Lambda-Runtime-Aws-Request-Id');
  const trace = headers['lambda-runtime-trace-id'];
  if (trace) process.env._X_AMZN_TRACE_ID = trace;
  else delete process.env._X_AMZN_TRACE_ID;

  let event;
  try {
    event = next.body.length ? JSON.parse(next.body.toString('utf8')) : null;
  } catch (e) {
    const errObj = { errorType: 'Runtime.UnmarshalError', errorMessage: `Unable to parse event: ${e.message}`, trace: [] };
    logError('Invoke Error', errObj);
    await postError(id, errObj, errObj.errorType);
    return;
  }

  phase = 'invoke';
  const outcome = await runHandler(handler, event, headers);
  if (dying) return new Promise(() => {}); // an uncaught error is being reported; exit follows

  let res;
  if ('error' in outcome) {
    const errObj = toRapidResponse(outcome.error);
    logError('Invoke Error', errObj);
    res = await postError(id, errObj, 'Unhandled');
  } else {
    let body;
    try {
      body = JSON.stringify(outcome.result === undefined ? null : outcome.result);
      if (body === undefined) body = 'null'; // functions, symbols
    } catch (e) {
      const errObj = {
        errorType: 'Runtime.MarshalError',
        errorMessage: `Unable to stringify response body: ${e && e.message}`,
        trace: [],
      };
      logError('Invoke Error', errObj);
      res = await postError(id, errObj, errObj.errorType);
      body = null;
    }
    if (body !== null) res = await postResponse(id, body);
  }
  if (res.status === 413) {
    process.stderr.write(`ERROR\tresponse for ${id} was rejected as too large\n`);
  } else if (res.status !== 202) {
    process.stderr.write(`WARN\tRuntime API answered ${res.status} for ${id}: ${res.body.toString('utf8', 0, 200)}\n`);
  }
}

async function main() {
  if (!address) fatal('AWS_LAMBDA_RUNTIME_API is not set');
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  let handler;
  try {
    handler = await loadHandler(root, process.env._HANDLER || '');
  } catch (e) {
    const errObj = toRapidResponse(e);
    logError('Init Error', errObj);
    dying = true;
    try {
      await postInitError(errObj);
    } catch (e2) {
      process.stderr.write(`ERROR\tcannot report the init error: ${e2 && e2.message}\n`);
    }
    process.exit(1);
  }
  for (;;) {
    try {
      await invokeOnce(handler);
    } catch (e) {
      fatal(`lost the Runtime API at ${address}: ${e && e.message}`);
    }
  }
}

main();
