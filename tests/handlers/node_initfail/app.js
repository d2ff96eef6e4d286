// Test handler (test_errors.c, initfail-node): loading this module throws, so INIT fails.
// The node runtime reports it through /init/error (Lambda's errorType for this case is the
// error's own name, "Error"; test_errors accepts any errorType with a message).
'use strict';

throw new Error('initfail-node: this module throws while it loads, on purpose');
