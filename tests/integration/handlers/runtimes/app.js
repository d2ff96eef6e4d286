// Integration-test fixture for test_lambda_runtimes (tests/integration/handlers/runtimes).
//
// handler: what the function is told about its runtime and what actually runs it:
// {"exec_env": AWS_EXECUTION_ENV or null, "version": "<this Node.js's version>"}.
exports.handler = async () => ({
  exec_env: process.env.AWS_EXECUTION_ENV ?? null,
  version: process.versions.node,
});
