-- pivoted_vital: vital signs from mimiciv_icu.chartevents, averaged per (stay_id, charttime)
-- (MIMIC-IV v2.2+; item ids and ranges of the community's measurement/vitalsign.sql), written with
-- the columns and units of sql/mimic-iii/pivoted_vital.sql: stay_id is written as icustay_id.
-- MIMIC-IV charts MetaVision items only. A value outside its plausible range counts as missing, but
-- its row still makes an (icustay_id, charttime) row. MIMIC-IV's chartevents has no error column
-- (its rows are not flagged), so none is filtered. Fahrenheit temperatures are range-checked in °F,
-- then converted to °C (not rounded to 2 decimals as the concept does, so the units match MIMIC-III's).
WITH vital AS (
  SELECT
    stay_id AS icustay_id,
    charttime,
    CASE WHEN itemid = 220045
          AND valuenum > 0 AND valuenum < 300 THEN valuenum END AS heartrate,
    CASE WHEN itemid IN (220179, 220050, 225309)
          AND valuenum > 0 AND valuenum < 400 THEN valuenum END AS sysbp,
    CASE WHEN itemid IN (220180, 220051, 225310)
          AND valuenum > 0 AND valuenum < 300 THEN valuenum END AS diasbp,
    CASE WHEN itemid IN (220052, 220181, 225312)
          AND valuenum > 0 AND valuenum < 300 THEN valuenum END AS meanbp,
    CASE WHEN itemid IN (220210, 224690)
          AND valuenum > 0 AND valuenum < 70 THEN valuenum END AS resprate,
    CASE WHEN itemid = 223762
          AND valuenum > 10 AND valuenum < 50 THEN valuenum
         WHEN itemid = 223761
          AND valuenum > 70 AND valuenum < 120 THEN (valuenum - 32) / 1.8 END AS tempc,
    CASE WHEN itemid = 220277
          AND valuenum > 0 AND valuenum <= 100 THEN valuenum END AS spo2,
    CASE WHEN itemid IN (225664, 220621, 226537)
          AND valuenum > 0 THEN valuenum END AS glucose
  FROM chartevents
  WHERE itemid IN (220045,
                   220179, 220050, 225309,
                   220180, 220051, 225310,
                   220052, 220181, 225312,
                   220210, 224690,
                   223762, 223761,
                   220277,
                   225664, 220621, 226537)
    AND stay_id IS NOT NULL
)
SELECT
  icustay_id,
  charttime,
  AVG(heartrate) AS heartrate,
  AVG(sysbp) AS sysbp,
  AVG(diasbp) AS diasbp,
  AVG(meanbp) AS meanbp,
  AVG(resprate) AS resprate,
  AVG(tempc) AS tempc,
  AVG(spo2) AS spo2,
  AVG(glucose) AS glucose
FROM vital
GROUP BY icustay_id, charttime
ORDER BY icustay_id, charttime
