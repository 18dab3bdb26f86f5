-- pivoted_vital: vital signs from chartevents, averaged per (icustay_id, charttime) (MIMIC-III v1.4).
-- CareVue (< 220000) and MetaVision item ids are pooled; a value outside its plausible range
-- counts as missing, but its row still makes an (icustay_id, charttime) row, as in the standard
-- concept. Rows flagged error = 1 and rows without an ICU stay are left out. Fahrenheit
-- temperatures are range-checked in °F, then converted to °C.
WITH vital AS (
  SELECT
    icustay_id,
    charttime,
    CASE WHEN itemid IN (211, 220045)
          AND valuenum > 0 AND valuenum < 300 THEN valuenum END AS heartrate,
    CASE WHEN itemid IN (51, 442, 455, 6701, 220179, 220050)
          AND valuenum > 0 AND valuenum < 400 THEN valuenum END AS sysbp,
    CASE WHEN itemid IN (8368, 8440, 8441, 8555, 220180, 220051)
          AND valuenum > 0 AND valuenum < 300 THEN valuenum END AS diasbp,
    CASE WHEN itemid IN (456, 52, 6702, 443, 220052, 220181, 225312)
          AND valuenum > 0 AND valuenum < 300 THEN valuenum END AS meanbp,
    CASE WHEN itemid IN (615, 618, 220210, 224690)
          AND valuenum > 0 AND valuenum < 70 THEN valuenum END AS resprate,
    CASE WHEN itemid IN (676, 223762)
          AND valuenum > 10 AND valuenum < 50 THEN valuenum
         WHEN itemid IN (678, 223761)
          AND valuenum > 70 AND valuenum < 120 THEN (valuenum - 32) / 1.8 END AS tempc,
    CASE WHEN itemid IN (646, 220277)
          AND valuenum > 0 AND valuenum <= 100 THEN valuenum END AS spo2,
    CASE WHEN itemid IN (807, 811, 1529, 3745, 3744, 225664, 220621, 226537)
          AND valuenum > 0 THEN valuenum END AS glucose
  FROM chartevents
  WHERE itemid IN (211, 220045,
                   51, 442, 455, 6701, 220179, 220050,
                   8368, 8440, 8441, 8555, 220180, 220051,
                   456, 52, 6702, 443, 220052, 220181, 225312,
                   615, 618, 220210, 224690,
                   676, 223762, 678, 223761,
                   646, 220277,
                   807, 811, 1529, 3745, 3744, 225664, 220621, 226537)
    AND (error IS NULL OR error <> 1)
    AND icustay_id IS NOT NULL
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
