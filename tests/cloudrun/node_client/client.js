// Google's own Cloud Run client for Node.js (@google-cloud/run, v2, REST fallback: no gRPC) against the local Cloud
// Run. One step a run, so the Python test can check each through gcloud:
//   node client.js <api port> create|revise|split|stale|list|delete
// Prints one JSON line: what the client read back. The local Cloud Run takes no credentials: `NoAuth` sends none.
'use strict';
const {ServicesClient} = require('@google-cloud/run').v2;

const PARENT = 'projects/iris-local/locations/us-central1';
const NAME = `${PARENT}/services/node`;

class NoAuth {
  async getClient() { return this; }
  async getRequestHeaders() { return new Headers(); }
  async getProjectId() { return 'iris-local'; }
  fetch(url, init) { return fetch(url, init); }
}

const template = (image, revision) => ({revision: revision || '', containers: [{image}]});
const REVISION = 'TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION';

async function main([port, step]) {
  const client = new ServicesClient({fallback: true, apiEndpoint: '127.0.0.1', port: Number(port), protocol: 'http',
                                     auth: new NoAuth()});
  const done = async ([operation]) => (await operation.promise())[0];
  const summary = (s) => ({name: s.name, etag: s.etag, latestReady: s.latestReadyRevision, uri: s.uri,
                           traffic: s.traffic, statuses: s.trafficStatuses});
  if (step === 'create') {
    return summary(await done(await client.createService({parent: PARENT, serviceId: 'node',
                                                          service: {template: template('iris:svc')}})));
  }
  const [current] = await client.getService({name: NAME});
  const first = current.traffic.find((t) => t.revision) || {revision: current.latestReadyRevision.split('/').pop()};
  if (step === 'revise') {
    current.template = template('iris:lin_svc', 'node-lin');
    current.traffic = [{type: REVISION, revision: first.revision, percent: 100}];
    return summary(await done(await client.updateService({service: current})));
  }
  if (step === 'split') {
    current.traffic = [{type: REVISION, revision: first.revision, percent: 90},
                       {type: REVISION, revision: 'node-lin', percent: 10, tag: 'canary'}];
    return summary(await done(await client.updateService({service: current})));
  }
  if (step === 'stale') {
    current.etag = '"1"';  // the etag the service had when it was created
    current.traffic = [{type: 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST', percent: 100}];
    try {
      await done(await client.updateService({service: current}));
      return {refused: false};
    } catch (error) {
      return {refused: true, code: error.code, message: error.message};
    }
  }
  if (step === 'list') {
    const [services] = await client.listServices({parent: PARENT});
    return {names: services.map((s) => s.name)};
  }
  if (step === 'delete') {
    return summary(await done(await client.deleteService({name: NAME})));
  }
  throw new Error(`unknown step ${step}`);
}

main(process.argv.slice(2)).then((result) => console.log(JSON.stringify(result)),
                                 (error) => { console.error(`FAILED: ${error.message}`); process.exit(1); });
