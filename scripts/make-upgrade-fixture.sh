#!/usr/bin/env bash
# Makes an upgrade fixture (test/fixtures/upgrade/<commit>/, read by test/support/upgrade-kit.ts): the server and
# agent data dirs an older meshid leaves after a short life, and what its agent served, for the current version to
# start on.
#
#   scripts/make-upgrade-fixture.sh <checkout> <fixture dir>
#
# <checkout> is a built checkout of the older commit (git clone, git checkout <commit>, npm ci; it builds as that
# commit's package.json says). Run it as the user the tests run as (root under .ci/run): the entries select that uid.
# It starts that version's server and agent on loopback and temporary dirs, makes a node alias and three workload
# entries (one with DNS names, one federated with partner.org, whose bundle is set) and, where that version has them, a
# federation relationship with other.org, attests the agent, fetches its X509-SVIDs and a JWT-SVID, keeps one join
# token unused, stops both with SIGTERM and copies what they left.
set -euo pipefail

checkout=$(cd "$1" && pwd)
out=$(realpath -m "$2")
[ -e "$out" ] && { echo "$out exists: remove it first" >&2; exit 2; }

# The executables moved into dist/bin when the build started bundling them.
server_main=$checkout/dist/bin/meshid-server.mjs
agent_main=$checkout/dist/bin/meshid-agent.mjs
[ -f "$server_main" ] || server_main=$checkout/dist/src/server/main.js
[ -f "$agent_main" ] || agent_main=$checkout/dist/src/agent/main.js
[ -f "$server_main" ] && [ -f "$agent_main" ] || { echo "$checkout is not built (npm ci there)" >&2; exit 2; }
commit=$(git -C "$checkout" rev-parse HEAD)

work=$(mktemp -d /tmp/meshid-fixture-XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

admin=$work/admin/admin.sock
srv() { node "$server_main" "$@" --admin-socket "$admin"; }
agt() { SPIFFE_ENDPOINT_SOCKET=unix://$work/socket/api.sock node "$agent_main" "$@"; }
stop() { kill -TERM "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; }

node "$server_main" run --trust-domain example.org --data-dir "$work/server-data" --bind-address 127.0.0.1:0 \
  --admin-socket "$admin" --datacenter east >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
until grep -qs '"agentApi"' "$work/server.log"; do
  kill -0 "$server" || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.2
done
port=$(grep -o '"agentApi":"[^"]*"' "$work/server.log" | head -1 | sed 's/.*:\([0-9]*\)"$/\1/')

uid=$(id -u)
srv bundle show >"$work/bundle.pem"
token=$(srv token generate --datacenter east | sed -n 's/^Token: *//p')
unused=$(srv token generate --datacenter east --ttl 2h | sed -n 's/^Token: *//p')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/partner.key" -out "$work/partner.pem" \
  -days 3650 -subj /CN=partner -addext subjectAltName=URI:spiffe://partner.org -addext basicConstraints=critical,CA:true \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
srv bundle set --trust-domain partner.org --path "$work/partner.pem" >/dev/null
# Versions with federation relationships (schema 4 on) get one; its endpoint answers nothing, so it is only polled.
relationships=''
if srv federation list >/dev/null 2>&1; then
  srv federation create --trust-domain other.org --bundle-endpoint-url https://127.0.0.1:9/bundle \
    --bundle-endpoint-profile https_web >/dev/null
  relationships='{"trustDomain": "other.org", "bundleEndpointUrl": "https://127.0.0.1:9/bundle", "profile": "https_web"}'
fi
srv entry create --node --spiffe-id spiffe://example.org/node/east --selector meshid:datacenter:east >/dev/null
srv entry create --parent-id spiffe://example.org/node/east --spiffe-id spiffe://example.org/web --selector "unix:uid:$uid" \
  --dns web.example.org --dns web >/dev/null
srv entry create --parent-id spiffe://example.org/node/east --spiffe-id spiffe://example.org/db --selector "unix:uid:$uid" \
  --federates-with partner.org >/dev/null
srv entry create --parent-id spiffe://example.org/node/east --spiffe-id spiffe://example.org/api --selector "unix:uid:$uid" \
  --selector unix:gid:"$(id -g)" >/dev/null

mkdir -m 755 "$work/socket"
node "$agent_main" run --server-address "127.0.0.1:$port" --socket-path "$work/socket/api.sock" --data-dir "$work/agent-data" \
  --trust-bundle "$work/bundle.pem" "--join-token=$token" >"$work/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
mkdir "$work/served"
for _ in $(seq 1 100); do
  if agt api fetch x509 --write "$work/served" 2>/dev/null | grep -q 'Received 3 svids'; then break; fi
  kill -0 "$agent" || { cat "$work/agent.log" >&2; exit 1; }
  sleep 0.2
done
[ -f "$work/served/svid.2.pem" ] || { echo "the agent did not serve 3 SVIDs" >&2; cat "$work/agent.log" >&2; exit 1; }
# Older agents print {"svids": [...]}, newer ones spire-agent's [{"svids": [...]}, {"bundles": ...}].
agt api fetch jwt --audience upgrade-test --spiffe-id spiffe://example.org/web --output json |
  node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{const j=JSON.parse(s);process.stdout.write((Array.isArray(j)?j[0]:j).svids[0].svid)})' \
    >"$work/served/jwt-svid.txt"
agent_id=$(srv agent list | sed -n 's/^SPIFFE ID *: *//p' | head -1)
made_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
stop "$agent"
stop "$server"
pids=()

[ -e "$work/server-data/datastore.sqlite3-wal" ] && { echo "the server left a -wal file: it did not stop cleanly" >&2; exit 1; }
# Read from the work copy: opening the fixture's own file would leave -wal and -shm files beside it.
schema=$(node -e 'const D=require(process.argv[1]);const d=new D(process.argv[2],{readonly:true});console.log(d.prepare("SELECT MAX(version) AS v FROM schema_migrations").get().v)' \
  "$checkout/node_modules/better-sqlite3" "$work/server-data/datastore.sqlite3")
mkdir -p "$out/server-data" "$out/agent-data" "$out/served"
# What a stopped daemon leaves, less its lock file (held by a running daemon only) and sockets.
(cd "$work/server-data" && cp -r --parents datastore.sqlite3 meshid-server.json ca "$out/server-data/")
[ -f "$work/server-data/server-svid.json" ] && cp "$work/server-data/server-svid.json" "$out/server-data/"
(cd "$work/agent-data" && cp agent-svid.json state.json state.*.journal "$out/agent-data/" 2>/dev/null || cp agent-svid.json state.json "$out/agent-data/")
cp "$work/bundle.pem" "$out/"
cp "$work"/served/svid.*.pem "$work/served/jwt-svid.txt" "$out/served/"
cat >"$out/fixture.json" <<EOF
{
  "commit": "$commit",
  "madeAt": "$made_at",
  "uid": $uid,
  "schemaVersion": $schema,
  "trustDomain": "example.org",
  "datacenter": "east",
  "agentId": "$agent_id",
  "spiffeIds": ["spiffe://example.org/web", "spiffe://example.org/db", "spiffe://example.org/api"],
  "entries": 4,
  "jwtAudience": "upgrade-test",
  "unusedJoinToken": "$unused",
  "federationRelationships": [$relationships]
}
EOF
echo "fixture of $commit in $out (made at $made_at)"
