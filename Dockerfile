# Tollgate: multi-stage build, small non-root runtime image.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --profile production --locked --bin tollgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home tollgate
COPY --from=build /src/target/production/tollgate /usr/local/bin/tollgate
COPY examples /etc/tollgate/examples
USER 10001
EXPOSE 9464 8080
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["router", "--config", "/etc/tollgate/examples/payments/router.toml"]
