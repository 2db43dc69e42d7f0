# Builds the single queueticket binary (web page and migrations compiled in).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p queueticket

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/queueticket /usr/local/bin/queueticket
ENV QT_LISTEN=0.0.0.0:8080 QT_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["queueticket"]
