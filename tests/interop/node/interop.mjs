// oauth4webapi (https://github.com/panva/oauth4webapi), an OAuth client nobody here wrote, against a
// running keyturn server. Driven by tests/test_oauth_interop_node.py, which asserts each result.
//
//   node interop.mjs ISSUER_URL
//
// Environment: INTEROP_PUBLIC_CLIENT_ID (the first-party public client), INTEROP_REFRESH_TOKEN (a
// user's, issued to it), INTEROP_BASIC_CLIENT_ID / INTEROP_BASIC_CLIENT_SECRET and
// INTEROP_POST_CLIENT_ID / INTEROP_POST_CLIENT_SECRET (machines registered with those methods),
// INTEROP_AUDIENCE (the machines' registered audience).
//
// Prints one JSON line: {step: {ok: true, ...what it found} | {ok: false, error: {...}}}. A step
// that is meant to be refused records the refusal as ok: false; the test says which those are.

import * as oauth from 'oauth4webapi'

const issuer = new URL(process.argv[2])
const env = (name) => {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}
// The test server is on loopback over http://, which oauth4webapi refuses unless told otherwise.
const options = { [oauth.allowInsecureRequests]: true }

const publicClient = { client_id: env('INTEROP_PUBLIC_CLIENT_ID') }
const basicClient = { client_id: env('INTEROP_BASIC_CLIENT_ID') }
const basicAuth = oauth.ClientSecretBasic(env('INTEROP_BASIC_CLIENT_SECRET'))
const postClient = { client_id: env('INTEROP_POST_CLIENT_ID') }
const postAuth = oauth.ClientSecretPost(env('INTEROP_POST_CLIENT_SECRET'))
const audience = env('INTEROP_AUDIENCE')

const results = {}

function described(err) {
  return {
    name: err.name, code: err.code, message: err.message,
    status: err.status, error: err.error, error_description: err.error_description,
  }
}

async function step(name, run) {
  try {
    results[name] = { ok: true, ...(await run()) }
  } catch (err) {
    results[name] = { ok: false, error: described(err) }
  }
  return results[name]
}

const tokenFacts = (t) => ({
  token_type: t.token_type, expires_in: t.expires_in, scope: t.scope, has_refresh_token: 'refresh_token' in t,
})

let as
const discovered = await step('discovery', async () => {
  const response = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...options })
  as = await oauth.processDiscoveryResponse(issuer, response)
  return {
    issuer: as.issuer, token_endpoint: as.token_endpoint, revocation_endpoint: as.revocation_endpoint,
    introspection_endpoint: as.introspection_endpoint, grant_types_supported: as.grant_types_supported,
  }
})

if (discovered.ok) {
  // A user's session, as the first-party public client: refresh (rotation), revoke, refresh again.
  const refreshToken = env('INTEROP_REFRESH_TOKEN')
  let rotated
  await step('refresh', async () => {
    const response = await oauth.refreshTokenGrantRequest(as, publicClient, oauth.None(), refreshToken, options)
    const tokens = await oauth.processRefreshTokenResponse(as, publicClient, response)
    rotated = tokens.refresh_token
    return { ...tokenFacts(tokens), rotated: tokens.refresh_token !== refreshToken }
  })
  await step('revocation', async () => {
    const response = await oauth.revocationRequest(as, publicClient, oauth.None(), rotated, options)
    await oauth.processRevocationResponse(response)
    return {}
  })
  await step('refresh_after_revocation', async () => {
    const response = await oauth.refreshTokenGrantRequest(as, publicClient, oauth.None(), rotated, options)
    return tokenFacts(await oauth.processRefreshTokenResponse(as, publicClient, response))
  })

  // Machines: client_credentials by each method, introspection, RFC 9068 validation, revocation.
  const machine = {}
  for (const [name, client, auth] of [['basic', basicClient, basicAuth], ['post', postClient, postAuth]]) {
    await step(`client_credentials_${name}`, async () => {
      const response = await oauth.clientCredentialsGrantRequest(as, client, auth, {}, options)
      const tokens = await oauth.processClientCredentialsResponse(as, client, response)
      machine[name] = tokens.access_token
      return tokenFacts(tokens)
    })
  }
  const introspect = async (token) => {
    const response = await oauth.introspectionRequest(as, basicClient, basicAuth, token, options)
    return oauth.processIntrospectionResponse(as, basicClient, response)
  }
  await step('introspection', async () => introspect(machine.basic))
  await step('introspection_of_revoked_refresh_token', async () => introspect(rotated))
  const validate = async (token, expected) => {
    const request = new Request('http://127.0.0.1/resource', { headers: { authorization: `Bearer ${token}` } })
    const claims = await oauth.validateJwtAccessToken(as, request, expected, options)
    return { iss: claims.iss, sub: claims.sub, client_id: claims.client_id, aud: claims.aud, scope: claims.scope }
  }
  await step('validate_jwt_access_token', async () => validate(machine.basic, audience))
  await step('validate_jwt_access_token_other_audience', async () => validate(machine.basic, `${audience}/other`))
  await step('machine_revocation', async () => {
    const response = await oauth.revocationRequest(as, postClient, postAuth, machine.post, options)
    await oauth.processRevocationResponse(response)
    return {}
  })
  await step('introspection_after_machine_revocation', async () => introspect(machine.post))
}

console.log(JSON.stringify(results))
