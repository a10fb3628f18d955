# syntax=docker/dockerfile:1
# The Use Pod provider agent: the CLI and its first-party plugins, run as a non-root user beside an engine.
#   docker build -t usepod-agent .                        (podman build works the same)
#   docker run -d --network host -v usepod-agent:/var/lib/usepod-agent \
#     -e USEPOD_ENROLLMENT_CODE=POD-ENROLL-... -e USEPOD_BACKEND_KIND=vllm \
#     -e USEPOD_BACKEND_URL=http://127.0.0.1:8000 usepod-agent
# BASE is any Debian-based image with Node.js 20 (the tests build one with debootstrap: no registry there).
ARG BASE=docker.io/library/node:20-bookworm-slim

FROM ${BASE} AS build
# better-sqlite3 (the ledger) is native: npm takes a prebuilt binary where it can download one, and
# builds it otherwise, which needs these. The runtime stage gets the built module, not the tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json tsconfig.base.json tsconfig.json LICENSE ./
COPY packages ./packages
COPY examples ./examples
# Development dependencies build; the runtime stage gets the published form: packed, then installed.
# npm ci is run again once if it fails: where open files are limited (1024 in test:container's builds) it
# can fail with EMFILE, as npm's cache opens its index files without a bound (npm/cacache#261).
RUN (npm ci --no-audit --no-fund --ignore-scripts || npm ci --no-audit --no-fund --ignore-scripts) \
 && mkdir /tarballs \
 && for p in core testkit plugin-vllm plugin-ollama plugin-llamacpp plugin-lmstudio plugin-openai-compatible plugin-alerts plugin-ledger plugin-dashboard plugin-update plugin-gpu plugin-control cli; do \
      (cd "packages/$p" && npm pack --silent --pack-destination /tarballs >/dev/null) || exit 1; \
    done
WORKDIR /app
# One project holding the packed packages: the CLI's @usepod-agent dependencies resolve to them (one
# core), everything else comes from the registry, production dependencies only. Of better-sqlite3's
# build only the module stays (its sources and objects were 26 of its 27 MB).
RUN printf '{"name":"usepod-agent-image","private":true}\n' > package.json \
 && npm install --omit=dev --no-audit --no-fund /tarballs/*.tgz \
 && cd node_modules/better-sqlite3 \
 && mv build/Release/better_sqlite3.node /tmp/ && rm -rf build deps src \
 && mkdir -p build/Release && mv /tmp/better_sqlite3.node build/Release/

FROM ${BASE}
# Third-party plugins baked in: --build-arg PLUGINS="usepod-agent-plugin-x @acme/usepod-agent-plugin-y",
# from NPM_REGISTRY when given (a private registry), else npm's default. Build arguments are recorded in
# the image's history: a registry's credentials go in an .npmrc passed as a secret, never in NPM_REGISTRY:
#   docker build --secret id=npmrc,src=$HOME/.npmrc --build-arg PLUGINS=... .
ARG PLUGINS=""
ARG NPM_REGISTRY=""
# The young generation capped as the service and the launcher start the agent (the CLI's package.json,
# "usepod-agent".nodeFlags; decision 0008): the peak at 256 streams ~20 MB lower.
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=4 \
    HOME=/var/lib/usepod-agent \
    XDG_CONFIG_HOME=/etc \
    XDG_DATA_HOME=/usr/local/share \
    XDG_CACHE_HOME=/tmp/usepod-agent-cache
COPY --from=build /app /opt/usepod-agent
COPY deploy/container/agent.toml /etc/usepod-agent/agent.toml
RUN --mount=type=secret,id=npmrc,required=false \
    case "$NPM_REGISTRY" in *@*) echo "NPM_REGISTRY must not carry credentials (they would ship in the image history): pass an .npmrc with --secret id=npmrc,src=PATH" >&2; exit 1;; esac \
 && ln -s /opt/usepod-agent/node_modules/usepod-agent/bin/run.js /usr/local/bin/usepod-agent \
 && groupadd --system --gid 10001 usepod \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/usepod-agent --shell /usr/sbin/nologin usepod \
 && install -d -o usepod -g usepod -m 0700 /var/lib/usepod-agent \
 && if [ -n "$PLUGINS" ]; then \
      env npm_config_cache=/tmp/npm-cache ${NPM_REGISTRY:+npm_config_registry=$NPM_REGISTRY} \
        $([ -f /run/secrets/npmrc ] && echo npm_config_userconfig=/run/secrets/npmrc) \
        usepod-agent plugins install $PLUGINS; \
    fi \
 && rm -rf /tmp/npm-cache /tmp/usepod-agent-cache
USER usepod
WORKDIR /var/lib/usepod-agent
VOLUME ["/var/lib/usepod-agent"]
EXPOSE 9090
# The agent drains on SIGTERM (jobs in flight finish, up to limits.drain_timeout_s) and handles it as PID 1;
# give the runtime a stop timeout above that (docker stop -t, compose stop_grace_period).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["usepod-agent"]
CMD ["run"]
