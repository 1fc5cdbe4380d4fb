-- hold_batch_events (015) plans four of its statements anew on every call:
-- the read and lock of the events, the lock of their categories, and the
-- buyers' tickets held. Their arguments are the call's arrays; the plan
-- cache weighed a plan made for the arrays at hand as cheaper than one
-- made for any arrays on every call measured, so it never settled on the
-- latter (pg_stat_statements: 2,263 plans in 2,262 calls). On
-- a call of one request that planning was a quarter of the call's time
-- (0.5 to 0.6 ms of 2.1 to 2.5, read from pg_stat_statements with
-- track_planning), and 0.4 to 0.5 ms of every batch of 30.
--
-- The plans made once for any arrays are the ones used: each reads by
-- primary key or by (event_id, buyer_key), whatever the arrays hold, and
-- ran as fast per call, measured the same way. The setting holds for the
-- call and for everything it runs, as enable_seqscan = off does; a
-- CREATE OR REPLACE of the function must carry both (schema_test checks).
ALTER FUNCTION hold_batch_events(bigint[], text[], text[], inet[], int[], int[], int[], bigint, int, int, text[], boolean)
    SET plan_cache_mode = force_generic_plan;
