// What the Rocket.Chat stand-in does through the `mongodb` npm driver, against the mongod stand-in.
const { MongoClient } = require(process.env.DRIVER);
(async () => {
  const c = new MongoClient(process.env.URL, { serverSelectionTimeoutMS: 10000 });
  await c.connect();
  const db = c.db('rocketchat');
  const users = db.collection('users');
  await users.createIndex({ username: 1 }, { unique: true });
  await users.insertOne({ _id: 'u1', username: 'alice', roles: ['admin'], createdAt: new Date() });
  console.log('findOne', JSON.stringify(await users.findOne({ roles: 'admin' })));
  await db.collection('rocketchat_settings').updateOne({ _id: 'Site_Url' }, { $set: { value: 'x', _updatedAt: new Date() } }, { upsert: true });
  console.log('count', await users.countDocuments({}), await db.collection('rocketchat_settings').estimatedDocumentCount());
  try { await users.insertOne({ username: 'alice' }); } catch (e) { console.log('dup', e.code); }
  console.log('list', (await db.listCollections().toArray()).map(x => x.name).sort().join(','));
  console.log('toArray', (await users.find({}, { projection: { username: 1 } }).sort({ username: 1 }).toArray()).length);
  const s = c.startSession(); await s.endSession();
  await c.close();
  console.log('OK');
})().catch(e => { console.error('FAIL', e); process.exit(1); });
