/*
 * bench/esm_mqtt.h - the MQTT pieces of bench_esm that need no broker of ours: a publisher
 * that sends N messages as fast as libmosquitto takes them, and the same-run ceiling, a plain
 * libmosquitto subscriber that counts what arrives. Both run libmosquitto's own network thread
 * (mosquitto_loop_start); errors end the bench (bc_fail).
 */
#ifndef SY_BENCH_ESM_MQTT_H
#define SY_BENCH_ESM_MQTT_H

#include <stddef.h>
#include <stdint.h>

/* A connected publisher on 127.0.0.1:PORT (clean session, no in-flight limit). */
struct mqtt_pub;
struct mqtt_pub *mqtt_pub_open(int port);
/* Publish N messages of LEN bytes to TOPIC at QOS; returns once all are acknowledged (QoS 0:
 * written), bounded by 120 s. */
void mqtt_pub_run(struct mqtt_pub *p, const char *topic, int qos, long n, size_t len);
/* One message (PAYLOAD, LEN bytes) to TOPIC at QOS, not waited for. */
void mqtt_pub_one(struct mqtt_pub *p, const char *topic, int qos, const void *payload, size_t len);
void mqtt_pub_close(struct mqtt_pub *p);

/*
 * The ceiling: a plain subscriber (clean session, QoS QOS, libmosquitto's automatic
 * acknowledgements) on TOPIC while P publishes N messages of LEN bytes to it; messages/s from
 * the first publish until the N-th message arrived.
 */
double mqtt_raw(struct mqtt_pub *p, int port, const char *topic, int qos, long n, size_t len);

/*
 * The latency baseline: a plain subscriber on TOPIC; SAMPLES times, one message published by P
 * and the time until it arrived (µs, malloc'd array of SAMPLES, caller frees), 10-15 ms apart.
 */
double *mqtt_raw_latency(struct mqtt_pub *p, int port, const char *topic, int qos, long samples);

#endif
