# Builds the iotdash and iotsim binaries into a small image; see docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/iotdash ./cmd/iotdash \
 && CGO_ENABLED=0 go build -trimpath -o /out/iotsim ./cmd/iotsim

FROM alpine:3.20
RUN adduser -D -u 10001 iotdash && mkdir /data && chown iotdash /data
COPY --from=build /out/ /usr/local/bin/
USER iotdash
EXPOSE 8080
CMD ["iotdash"]
