// udax: Linux DAX semantics in user space.
export { open, attach, DaxFile } from './file.js';
export type { OpenOptions, DaxFileHandle, DaxStats } from './file.js';
export { Mapping } from './mapping.js';
export type { MapOptions, MappingHandle } from './mapping.js';
export type { SyncResult } from './writeback.js';
export { DaxError, UDAX_ERROR_CODES } from './errors.js';
export type { UdaxErrorCode } from './errors.js';
export { flushChoice, chooseFlushInstruction } from './flush.js';
export type { FlushChoice, FlushInstruction } from './flush.js';
export { PAGE_SIZE, PMD_SIZE } from './constants.js';
export { version } from './package.js';
export { systemInfo } from './info.js';
export type { SystemInfo, PathInfo } from './info.js';
export { DaxHandle } from './handle.js';
export type { PersistOptions, PersistStats, MediaInfo, MediaKind } from './persist.js';
export type { InjectOptions } from './inject.js';
export type { Granularity } from './media.js';
export { OPTANE, TIMING_PRESETS } from './timing.js';
export type { TimingModel } from './timing.js';
export { checkRecovery, assertRecovers } from './crash.js';
export type {
  Unit, CrashImageOptions, CrashImageResult, CrashStatesOptions, CrashState, CrashStates,
  CheckRecoveryOptions, RecoveryReport, RecoveryFailure, RecoverFn,
} from './crash.js';
export { openVolume, Volume, VolumeFile } from './volume.js';
export type { VolumeOptions, VolumeEntry, VolumeCall, VolumeEvent, VolumeObserver } from './volume.js';
export { exploreCrashPoints } from './crash-points.js';
export type { CrashPoint, CrashPointWorkload, CrashPointInfo, CrashPointRecoverFn, ExploreCrashPointsOptions, CrashPointsProgress, CrashPointViolation, CrashPointSummary, CrashPointsReport } from './crash-points.js';
export type { PoolModule } from './crash-points-pool.js';
export type { RecoveryModule } from './volume-check-pool.js';
export type { MetadataModelName } from './metadata.js';
export { VolumeCrashStates } from './volume-crash.js';
export type { VolumeCrashState, VolumeCrashStatesOptions, VolumeUnit, VolumeOperation, SampleOptions, StateChoice } from './volume-crash.js';
export { checkVolumeRecovery } from './volume-check.js';
export type { CheckVolumeRecoveryOptions, CheckVolumeRecoveryPoolOptions, VolumeRecoveryReport, VolumeRecoveryFailure, VolumeRecoverFn } from './volume-check.js';
