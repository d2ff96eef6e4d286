// A handler for the config tests: only its directory matters to them.
exports.handler = async (event) => event;
