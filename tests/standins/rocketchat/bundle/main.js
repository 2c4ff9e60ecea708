// Stand-in for a Rocket.Chat release bundle's entry point (bundle/main.js).
// The real one boots Meteor from programs/server; this one boots a small
// server that reads the same environment and talks to MongoDB the same way
// (see tests/standins/rocketchat/README.md for what it does and does not do).
require('./programs/server/boot.js');
