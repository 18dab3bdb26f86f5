-- pivoted_lab: laboratory values from labevents, averaged per (subject_id, charttime), then
-- assigned to the ICU stay and the hospital admission whose window holds the charttime
-- (MIMIC-III v1.4). Only rows with a positive valuenum count; a value above its plausible bound
-- counts as missing. Magnesium (50960, values in (0, 20] mg/dL) and total calcium (50893, values in
-- (0, 20] mg/dL; the chemistry source of the calcium feature) are icurt's additions.
--
-- Windows: a stay covers [intime - 12 h, outtime + 12 h). When the subject's neighbouring stay is
-- less than 24 h away, that edge moves to the midpoint of the gap (rounded to the second, ties to
-- even, as the standard concept computes it). Admissions get windows the same way from
-- admittime/dischtime. Labs outside every window keep a NULL icustay_id / hadm_id.
WITH stay_neighbours AS (
  SELECT
    subject_id,
    icustay_id,
    intime,
    outtime,
    LAG(outtime) OVER by_subject AS previous_outtime,
    LEAD(intime) OVER by_subject AS next_intime
  FROM icustays
  WINDOW by_subject AS (PARTITION BY subject_id ORDER BY intime)
), stay_window AS (
  SELECT
    subject_id,
    icustay_id,
    CASE WHEN previous_outtime > intime - INTERVAL '24 hours'
      THEN intime - INTERVAL '1 second' * CAST(
        CAST(EXTRACT(EPOCH FROM date_trunc('second', intime) - date_trunc('second', previous_outtime))
             AS DOUBLE PRECISION) / 2 AS BIGINT)
      ELSE intime - INTERVAL '12 hours'
    END AS window_start,
    CASE WHEN next_intime < outtime + INTERVAL '24 hours'
      THEN outtime + INTERVAL '1 second' * CAST(
        CAST(EXTRACT(EPOCH FROM date_trunc('second', next_intime) - date_trunc('second', outtime))
             AS DOUBLE PRECISION) / 2 AS BIGINT)
      ELSE outtime + INTERVAL '12 hours'
    END AS window_end
  FROM stay_neighbours
), admission_neighbours AS (
  SELECT
    subject_id,
    hadm_id,
    admittime,
    dischtime,
    LAG(dischtime) OVER by_subject AS previous_dischtime,
    LEAD(admittime) OVER by_subject AS next_admittime
  FROM admissions
  WINDOW by_subject AS (PARTITION BY subject_id ORDER BY admittime)
), admission_window AS (
  SELECT
    subject_id,
    hadm_id,
    CASE WHEN previous_dischtime > admittime - INTERVAL '24 hours'
      THEN admittime - INTERVAL '1 second' * CAST(
        CAST(EXTRACT(EPOCH FROM date_trunc('second', admittime) - date_trunc('second', previous_dischtime))
             AS DOUBLE PRECISION) / 2 AS BIGINT)
      ELSE admittime - INTERVAL '12 hours'
    END AS window_start,
    CASE WHEN next_admittime < dischtime + INTERVAL '24 hours'
      THEN dischtime + INTERVAL '1 second' * CAST(
        CAST(EXTRACT(EPOCH FROM date_trunc('second', next_admittime) - date_trunc('second', dischtime))
             AS DOUBLE PRECISION) / 2 AS BIGINT)
      ELSE dischtime + INTERVAL '12 hours'
    END AS window_end
  FROM admission_neighbours
), lab AS (
  SELECT
    subject_id,
    charttime,
    AVG(valuenum) FILTER (WHERE itemid = 50868 AND valuenum <= 10000) AS aniongap,
    AVG(valuenum) FILTER (WHERE itemid = 50862 AND valuenum <= 10) AS albumin,
    AVG(valuenum) FILTER (WHERE itemid = 51144 AND valuenum <= 100) AS bands,
    AVG(valuenum) FILTER (WHERE itemid = 50882 AND valuenum <= 10000) AS bicarbonate,
    AVG(valuenum) FILTER (WHERE itemid = 50885 AND valuenum <= 150) AS bilirubin,
    AVG(valuenum) FILTER (WHERE itemid = 50912 AND valuenum <= 150) AS creatinine,
    AVG(valuenum) FILTER (WHERE itemid = 50902 AND valuenum <= 10000) AS chloride,
    AVG(valuenum) FILTER (WHERE itemid = 50931 AND valuenum <= 10000) AS glucose,
    AVG(valuenum) FILTER (WHERE itemid = 51221 AND valuenum <= 100) AS hematocrit,
    AVG(valuenum) FILTER (WHERE itemid = 51222 AND valuenum <= 50) AS hemoglobin,
    AVG(valuenum) FILTER (WHERE itemid = 50813 AND valuenum <= 50) AS lactate,
    AVG(valuenum) FILTER (WHERE itemid = 51265 AND valuenum <= 10000) AS platelet,
    AVG(valuenum) FILTER (WHERE itemid = 50971 AND valuenum <= 30) AS potassium,
    AVG(valuenum) FILTER (WHERE itemid = 51275 AND valuenum <= 150) AS ptt,
    AVG(valuenum) FILTER (WHERE itemid = 51237 AND valuenum <= 50) AS inr,
    AVG(valuenum) FILTER (WHERE itemid = 51274 AND valuenum <= 150) AS pt,
    AVG(valuenum) FILTER (WHERE itemid = 50983 AND valuenum <= 200) AS sodium,
    AVG(valuenum) FILTER (WHERE itemid = 51006 AND valuenum <= 300) AS bun,
    AVG(valuenum) FILTER (WHERE itemid IN (51300, 51301) AND valuenum <= 1000) AS wbc,
    AVG(valuenum) FILTER (WHERE itemid = 50960 AND valuenum <= 20) AS magnesium,
    AVG(valuenum) FILTER (WHERE itemid = 50893 AND valuenum <= 20) AS calcium
  FROM labevents
  WHERE itemid IN (50868, 50862, 51144, 50882, 50885, 50912, 50902, 50931, 51221, 51222,
                   50813, 51265, 50971, 51275, 51237, 51274, 50983, 51006, 51300, 51301, 50960,
                   50893)
    AND valuenum IS NOT NULL
    AND valuenum > 0
  GROUP BY subject_id, charttime
)
SELECT
  stay_window.icustay_id,
  admission_window.hadm_id,
  lab.subject_id,
  lab.charttime,
  lab.aniongap, lab.albumin, lab.bands, lab.bicarbonate, lab.bilirubin, lab.creatinine,
  lab.chloride, lab.glucose, lab.hematocrit, lab.hemoglobin, lab.lactate, lab.platelet,
  lab.potassium, lab.ptt, lab.inr, lab.pt, lab.sodium, lab.bun, lab.wbc, lab.magnesium, lab.calcium
FROM lab
LEFT JOIN admission_window
  ON admission_window.subject_id = lab.subject_id
 AND lab.charttime >= admission_window.window_start
 AND lab.charttime < admission_window.window_end
LEFT JOIN stay_window
  ON stay_window.subject_id = lab.subject_id
 AND lab.charttime >= stay_window.window_start
 AND lab.charttime < stay_window.window_end
ORDER BY lab.subject_id, lab.charttime, admission_window.hadm_id, stay_window.icustay_id
