-- pivoted_bg: blood-gas values from labevents, one row per (hadm_id, charttime), assigned to the
-- ICU stay whose window holds the charttime (MIMIC-III v1.4). Values <= 0 count as missing, as do
-- a few implausible ones (hematocrit > 100, FiO2 outside [20, 100], SO2 > 100, O2 flow > 70,
-- PO2 > 800). A sample listing two or more different specimen types is dropped (its origin is
-- unknown); a specimen row listed twice with the same type does not drop it (the standard concept
-- counts rows, so one duplicated row would lose the whole sample).
-- Item ids 50807 and 51545 have no column but still make rows, as in the standard concept.
--
-- Windows: [intime - 12 h, outtime + 12 h); against a neighbouring stay less than 24 h away the
-- start moves back by half the gap in whole hours (hour-truncated times, ties to even) and the
-- end forward by half the gap in whole minutes (minute-truncated times), as the standard concept
-- computes them. Samples without an admission in the admissions table are left out.
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
      THEN intime - INTERVAL '1 hour' * CAST(
        CAST(EXTRACT(EPOCH FROM date_trunc('hour', intime) - date_trunc('hour', previous_outtime)) / 3600
             AS DOUBLE PRECISION) / 2 AS BIGINT)
      ELSE intime - INTERVAL '12 hours'
    END AS window_start,
    CASE WHEN next_intime < outtime + INTERVAL '24 hours'
      THEN outtime + INTERVAL '1 minute' * CAST(
        CAST(EXTRACT(EPOCH FROM date_trunc('minute', next_intime) - date_trunc('minute', outtime)) / 60
             AS DOUBLE PRECISION) / 2 AS BIGINT)
      ELSE outtime + INTERVAL '12 hours'
    END AS window_end
  FROM stay_neighbours
), sample AS (
  SELECT
    hadm_id,
    charttime,
    MAX(value) FILTER (WHERE itemid = 50800) AS specimen,
    AVG(valuenum) FILTER (WHERE itemid = 50801 AND valuenum > 0) AS aado2,
    AVG(valuenum) FILTER (WHERE itemid = 50802 AND valuenum > 0) AS baseexcess,
    AVG(valuenum) FILTER (WHERE itemid = 50803 AND valuenum > 0) AS bicarbonate,
    AVG(valuenum) FILTER (WHERE itemid = 50804 AND valuenum > 0) AS totalco2,
    AVG(valuenum) FILTER (WHERE itemid = 50805 AND valuenum > 0) AS carboxyhemoglobin,
    AVG(valuenum) FILTER (WHERE itemid = 50806 AND valuenum > 0) AS chloride,
    AVG(valuenum) FILTER (WHERE itemid = 50808 AND valuenum > 0) AS calcium,
    AVG(valuenum) FILTER (WHERE itemid = 50809 AND valuenum > 0) AS glucose,
    AVG(valuenum) FILTER (WHERE itemid = 50810 AND valuenum > 0 AND valuenum <= 100) AS hematocrit,
    AVG(valuenum) FILTER (WHERE itemid = 50811 AND valuenum > 0) AS hemoglobin,
    AVG(valuenum) FILTER (WHERE itemid = 50812 AND valuenum > 0) AS intubated,
    AVG(valuenum) FILTER (WHERE itemid = 50813 AND valuenum > 0) AS lactate,
    AVG(valuenum) FILTER (WHERE itemid = 50814 AND valuenum > 0) AS methemoglobin,
    AVG(valuenum) FILTER (WHERE itemid = 50815 AND valuenum > 0 AND valuenum <= 70) AS o2flow,
    AVG(valuenum) FILTER (WHERE itemid = 50816 AND valuenum >= 20 AND valuenum <= 100) AS fio2,
    AVG(valuenum) FILTER (WHERE itemid = 50817 AND valuenum > 0 AND valuenum <= 100) AS so2,
    AVG(valuenum) FILTER (WHERE itemid = 50818 AND valuenum > 0) AS pco2,
    AVG(valuenum) FILTER (WHERE itemid = 50819 AND valuenum > 0) AS peep,
    AVG(valuenum) FILTER (WHERE itemid = 50820 AND valuenum > 0) AS ph,
    AVG(valuenum) FILTER (WHERE itemid = 50821 AND valuenum > 0 AND valuenum <= 800) AS po2,
    AVG(valuenum) FILTER (WHERE itemid = 50822 AND valuenum > 0) AS potassium,
    AVG(valuenum) FILTER (WHERE itemid = 50823 AND valuenum > 0) AS requiredo2,
    AVG(valuenum) FILTER (WHERE itemid = 50824 AND valuenum > 0) AS sodium,
    AVG(valuenum) FILTER (WHERE itemid = 50825 AND valuenum > 0) AS temperature,
    AVG(valuenum) FILTER (WHERE itemid = 50826 AND valuenum > 0) AS tidalvolume,
    MAX(valuenum) FILTER (WHERE itemid = 50827 AND valuenum > 0) AS ventilationrate,
    MAX(valuenum) FILTER (WHERE itemid = 50828 AND valuenum > 0) AS ventilator
  FROM labevents
  WHERE itemid BETWEEN 50800 AND 50828 OR itemid = 51545
  GROUP BY hadm_id, charttime
  HAVING COUNT(DISTINCT COALESCE(value, '')) FILTER (WHERE itemid = 50800) < 2
)
SELECT
  stay_window.icustay_id,
  sample.*
FROM sample
JOIN admissions ON admissions.hadm_id = sample.hadm_id
LEFT JOIN stay_window
  ON stay_window.subject_id = admissions.subject_id
 AND sample.charttime >= stay_window.window_start
 AND sample.charttime < stay_window.window_end
ORDER BY sample.hadm_id, sample.charttime, stay_window.icustay_id
