// Dredd loads Node.js hooks only from a file it require()s. The hooks themselves are written in
// TypeScript (dredd.ts) and arrive through Dredd's `custom` configuration, which hook files see.
const hooks = require('hooks');

hooks.configuration.custom.registerHooks(hooks);
