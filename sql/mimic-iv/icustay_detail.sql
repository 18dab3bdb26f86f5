-- icustay_detail: one row per ICU stay whose admission has chart data (MIMIC-IV v2.2+:
-- mimiciv_icu.icustays ⋈ mimiciv_hosp.admissions ⋈ mimiciv_hosp.patients, after the community's
-- demographics/icustay_detail.sql), with the columns and units of sql/mimic-iii/icustay_detail.sql:
-- stay_id is written as icustay_id and race as ethnicity. What differs from MIMIC-III:
-- * MIMIC-IV has no date of birth: admission_age = anchor_age + year(admittime) - anchor_year, whole
--   years, as the concept computes it. Patients over 89 have anchor_age 91 (no shifted ~300 ages);
--   age_years caps ages over 89 at 91.4 as for MIMIC-III.
-- * MIMIC-IV has no has_chartevents_data: a stay is kept when a stay of its admission has a
--   chartevents row (what that flag says), so sequence numbers rank the same rows as for MIMIC-III.
-- * dod (a DATE in MIMIC-IV, deaths up to a year after discharge) is written as a timestamp; the
--   label is hospital_expire_flag, as for MIMIC-III.
-- Lengths of stay are exact fractional days, as in icurt's MIMIC-III query (the concept's are whole).
WITH stay AS (
  SELECT
    ie.subject_id,
    ie.hadm_id,
    ie.stay_id AS icustay_id,
    CAST(pat.gender AS TEXT) AS gender,
    CAST(pat.dod AS TIMESTAMP) AS dod,
    adm.admittime,
    adm.dischtime,
    CAST(EXTRACT(EPOCH FROM adm.dischtime - adm.admittime) / 86400.0 AS DOUBLE PRECISION) AS los_hospital,
    CAST(pat.anchor_age + EXTRACT(YEAR FROM adm.admittime) - pat.anchor_year AS DOUBLE PRECISION) AS admission_age,
    adm.race AS ethnicity,
    adm.hospital_expire_flag,
    DENSE_RANK() OVER (PARTITION BY adm.subject_id ORDER BY adm.admittime) AS hospstay_seq,
    ie.intime,
    ie.outtime,
    CAST(EXTRACT(EPOCH FROM ie.outtime - ie.intime) / 86400.0 AS DOUBLE PRECISION) AS los_icu,
    DENSE_RANK() OVER (PARTITION BY ie.hadm_id ORDER BY ie.intime) AS icustay_seq
  FROM icustays AS ie
  JOIN admissions AS adm ON adm.hadm_id = ie.hadm_id
  JOIN patients AS pat ON pat.subject_id = ie.subject_id
  WHERE EXISTS (SELECT 1
                  FROM icustays AS charted
                  JOIN chartevents AS ce ON ce.stay_id = charted.stay_id
                 WHERE charted.hadm_id = ie.hadm_id)
)
SELECT
  subject_id,
  hadm_id,
  icustay_id,
  gender,
  dod,
  admittime,
  dischtime,
  los_hospital,
  admission_age,
  CASE WHEN admission_age > 89 THEN 91.4 ELSE admission_age END AS age_years,
  ethnicity,
  CASE
    WHEN ethnicity LIKE 'WHITE%' THEN 'white'
    WHEN ethnicity LIKE 'BLACK%' OR ethnicity = 'CARIBBEAN ISLAND' THEN 'black'
    WHEN ethnicity LIKE 'HISPANIC%' THEN 'hispanic'
    WHEN ethnicity LIKE 'ASIAN%' THEN 'asian'
    WHEN ethnicity LIKE 'AMERICAN INDIAN%' THEN 'native'
    WHEN ethnicity IN ('UNKNOWN', 'UNABLE TO OBTAIN', 'PATIENT DECLINED TO ANSWER') THEN 'unknown'
    ELSE 'other'
  END AS ethnicity_grouped,
  hospital_expire_flag,
  hospstay_seq,
  hospstay_seq = 1 AS first_hosp_stay,
  intime,
  outtime,
  los_icu,
  icustay_seq,
  icustay_seq = 1 AS first_icu_stay
FROM stay
ORDER BY subject_id, admittime, intime, icustay_id
