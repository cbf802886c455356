// Signs webhooks with Stripe's own SDK (stripe.webhooks.generateTestHeaderString)
// and posts them to a running supaplane-billing: an independent client of the
// signature scheme.   node check.js <webhook url> <endpoint secret>
'use strict';
const Stripe = require('stripe');

const [url, secret] = process.argv.slice(2);
if (!url || !secret) {
  console.error('usage: node check.js <webhook url> <endpoint secret>');
  process.exit(2);
}
const stripe = new Stripe('sk_test_unused');
const now = Math.floor(Date.now() / 1000);
let failures = 0;

function event(id, type, object) {
  return JSON.stringify({ id, object: 'event', api_version: '2024-06-20', created: now, type,
                          data: { object } }, null, 2);
}

async function post(name, payload, header, want) {
  const headers = { 'Content-Type': 'application/json' };
  if (header !== null) headers['Stripe-Signature'] = header;
  const res = await fetch(url, { method: 'POST', headers, body: payload });
  const text = await res.text();
  const ok = res.status === want;
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: HTTP ${res.status} (want ${want}) ${text.trim()}`);
}

(async () => {
  const checkout = event('evt_sdk_checkout', 'checkout.session.completed', {
    id: 'cs_sdk_1', object: 'checkout.session', customer: 'cus_sdk', subscription: 'sub_sdk',
    client_reference_id: 'nosuchtenantrefxxxxx',
    metadata: { tenant_ref: 'nosuchtenantrefxxxxx', plan: 'pro' },
  });
  const ignored = event('evt_sdk_ignored', 'charge.refunded', { id: 'ch_sdk_1', object: 'charge' });
  const sign = (payload, opts = {}) =>
    stripe.webhooks.generateTestHeaderString({ payload, secret, ...opts });

  await post('valid signature (recorded)', checkout, sign(checkout), 200);
  await post('same event again (duplicate)', checkout, sign(checkout), 200);
  await post('valid signature, ignored type', ignored, sign(ignored), 200);
  await post('wrong secret', checkout, sign(checkout, { secret: 'whsec_wrong' }), 400);
  await post('tampered body', checkout.replace('"pro"', '"starter"'), sign(checkout), 400);
  await post('stale timestamp', checkout, sign(checkout, { timestamp: now - 3600 }), 400);
  await post('future timestamp', checkout, sign(checkout, { timestamp: now + 3600 }), 400);
  await post('missing header', checkout, null, 400);
  await post('garbage header', checkout, 'definitely-not-a-signature', 400);
  // The SDK's own verifier accepts what it signed (sanity of the fixture itself).
  stripe.webhooks.constructEvent(checkout, sign(checkout), secret);
  if (failures) {
    console.error(`${failures} check(s) failed`);
    process.exit(1);
  }
  console.log('all Stripe SDK checks passed');
})().catch((e) => {
  console.error('FAIL:', e);
  process.exit(1);
});
