/*
 * bench/kafka_raw.h - the baseline of the Kafka source benchmark: a plain C librdkafka
 * high-level consumer doing the least the source must do (subscribe, read, commit what it
 * read), measured in the calling process.
 */
#ifndef SY_BENCH_KAFKA_RAW_H
#define SY_BENCH_KAFKA_RAW_H

/*
 * Consume NRECORDS records of TOPIC in consumer group GROUP from the cluster at BOOTSTRAP:
 * subscribe(), auto-commit off, auto.offset.reset earliest; after each record its next offset
 * is remembered per partition, an asynchronous commit of exactly those offsets goes out every
 * 10,000 records, and a final synchronous commit ends the run. Use a fresh GROUP to read from
 * the beginning.
 *
 * PROPS (name, value, ..., NULL; may be NULL) are librdkafka properties applied after those
 * defaults (queued.min.messages, fetch.max.bytes, ...), except names starting with "bench.",
 * which are this function's own knobs:
 *   bench.commit.every  records between asynchronous commits (default 10000; 0: only the
 *                       final synchronous commit)
 *
 * *RECS_PER_S is NRECORDS divided by the time from the first record to the end of the final
 * commit (the group join, ~3 s on librdkafka's mock, is not counted). *PEAK_RSS_KB is the
 * process's peak resident size from the consumer's creation to its destruction (VmHWM after
 * resetting it through /proc/self/clear_refs, else the highest VmRSS sampled every 50 ms):
 * everything the calling process holds counts, so call it from a small process.
 *
 * Blocks the calling thread; every wait is bounded (30 s without a record fails the run).
 * Returns 0, or -1 with a line on stderr ("bench_kafka_raw: ..."); the outputs are set only
 * on success.
 */
int bench_kafka_raw(const char *bootstrap, const char *topic, const char *group, long nrecords,
                    const char *const *props, double *recs_per_s, long *peak_rss_kb);

#endif
